// Issue 23, finding 12: required fields are checked on encode and on decode (tests/ttheader/test_required_fields.py).
namespace py checked
namespace go checked

struct Inner {
    1: required string r_string
    2: optional i32 opt
}

struct Request {
    1: required string r_string
    2: optional Inner inner
    3: optional list<Inner> inners
    4: optional map<string, Inner> by_name
}

struct Response {
    1: required string r_string
    2: optional string note
}

exception Failure {
    1: required i32 code
    2: optional string message
}

service Checked {
    Response call(1: Request req) throws (1: Failure failure)
}
