namespace go echo
namespace py echo

struct EchoRequest {
    1: string message
    2: binary payload
    3: i64 seq
}

struct EchoReply {
    1: string message
    2: binary payload
    3: i64 seq
}

exception EchoError {
    1: i32 code
    2: string message
}

service Echo {
    EchoReply echo(1: EchoRequest req)
    oneway void notify(1: EchoRequest req)
    EchoReply fail(1: EchoRequest req) throws (1: EchoError err)
}
