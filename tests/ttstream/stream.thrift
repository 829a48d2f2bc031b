namespace go ttstream

struct Request {
    1: required string message
    2: i32 seq
    3: binary payload
}

struct Response {
    1: required string message
    2: i32 seq
    3: binary payload
}
