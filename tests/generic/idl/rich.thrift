namespace go rich
include "base.thrift"

enum Color {
    RED = 1,
    GREEN = 2,
}

struct Inner {
    1: required i64 id
    2: optional string note
    3: double ratio = 1.5
}

struct RichRequest {
    1: required i64 big
    2: i32 small
    3: i16 tiny
    4: byte b
    5: binary data
    6: list<Inner> items
    7: set<string> tags
    8: map<i64, Inner> by_id
    9: map<bool, i32> flags
    10: Color color
    11: optional Inner inner
    12: double d
    13: bool ok
    14: optional base.Base base
    15: map<string, list<map<i32, string>>> nested
}

exception RichError {
    1: i32 code
    2: string reason
}

service Rich {
    RichRequest Echo(1: RichRequest req) throws (1: RichError err)
    string Name(1: string who)
    void Ping(1: i32 n)
    oneway void Fire(1: RichRequest req)
}
