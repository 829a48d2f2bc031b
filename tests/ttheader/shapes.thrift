// Every value shape thriftpy2's reader handles: for tests/ttheader/test_thrift_bounds.py.
namespace py shapes

struct Inner {
    1: i32 id
    2: string name
}

struct Node {
    1: i64 value
    2: list<Node> children
}

struct Shapes {
    1: list<i64> numbers
    2: list<string> words
    3: map<string, list<i32>> groups
    4: set<Inner> inners
    5: map<i32, list<i32>> by_id
    6: binary blob
    7: Node tree
    8: map<i32, Inner> table
    9: bool flag
    10: byte small
    11: i16 short_int
    12: double ratio
    13: list<list<string>> nested
    14: map<string, string> labels
}
