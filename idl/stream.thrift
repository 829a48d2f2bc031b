// Thrift streaming (Kitex `streaming.mode`): over gRPC with content-type application/grpc+thrift, and over
// TTHeader Streaming. Handlers in the tests and in interop/ key their behaviour on `message` (interop/README.md).
namespace go echostream
namespace py echostream

struct StreamRequest {
    1: string message
    2: binary payload
    3: i64 seq
    4: i32 count
}

struct StreamReply {
    1: string message
    2: binary payload
    3: i64 seq
}

exception StreamError {
    1: i32 code
    2: string message
}

service StreamService {
    // ping-pong: Args/Result wrappers on every transport
    StreamReply Echo(1: StreamRequest req) throws (1: StreamError err)
    // unary over a streaming transport: still the Args/Result wrappers
    StreamReply EchoUnary(1: StreamRequest req) throws (1: StreamError err) (streaming.mode="unary")
    // streams: each message is a bare StreamRequest / StreamReply
    StreamReply EchoClient(1: StreamRequest req) (streaming.mode="client")
    StreamReply EchoServer(1: StreamRequest req) (streaming.mode="server")
    StreamReply EchoBidi(1: StreamRequest req) (streaming.mode="bidirectional")
}
