// required.thrift without the `required` keywords: a peer that does not check them.
namespace py checked_loose
namespace go checked_loose

struct Inner {
    1: optional string r_string
    2: optional i32 opt
}

struct Request {
    1: optional string r_string
    2: optional Inner inner
    3: optional list<Inner> inners
    4: optional map<string, Inner> by_name
}

struct Response {
    1: optional string r_string
    2: optional string note
}

exception Failure {
    1: optional i32 code
    2: optional string message
}

service Checked {
    Response call(1: Request req) throws (1: Failure failure)
}
