namespace go base

struct Base {
    1: string log_id
    2: optional map<string, string> extra
}
