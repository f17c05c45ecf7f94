"""PUT /v1/routes parsing: the batched IP fast path gives exactly what parse_route gives, and names the same first error."""

import pytest

from valkyrie.routes import RouteError, parse_route
from valkyrie.writer import parse_delete, parse_put

ENTRIES = [
    {"prefix": "198.51.100.0/24", "next_hop": "a"}, {"prefix": "2001:db8::/32", "next_hop": "a"},
    {"prefix": "10.1.2.3", "next_hop": "a"}, {"prefix": "2001:db8::1", "next_hop": "a"},
    {"prefix": "0.0.0.0/0", "next_hop": "a"}, {"prefix": "::/0", "next_hop": "a"},
    {"prefix": "ci.build.", "next_hop": "a"}, {"key": "job-42", "next_hop": "a"}, {"key": "10.1.2.3", "next_hop": "a"},
    {"key": "ünïcode", "next_hop": "a"}, {"key": "x" * 255, "next_hop": "a"},
    {"prefix": "10.0.0.0/255.0.0.0", "next_hop": "a"},  # a netmask: not the fast path's form
    {"prefix": "::ffff:10.0.0.0/104", "next_hop": "a"}, {"prefix": "2001:DB8::/32", "next_hop": "a"},
]


def test_fast_path_matches_the_exact_parser():
    assert parse_put({"routes": ENTRIES}, 100).puts == [parse_route(o, f"routes[{i}]") for i, o in enumerate(ENTRIES)]


@pytest.mark.parametrize("bad, message", [
    ([{"key": "", "next_hop": "a"}, {"prefix": "10.0.0.1/8", "next_hop": "a"}], "routes[0]"),
    ([{"prefix": "10.0.0.0/8", "next_hop": "a"}, {"prefix": "10.0.0.1/8", "next_hop": "a"}], "routes[1]"),
    ([{"prefix": "010.0.0.0/8", "next_hop": "a"}], "routes[0]"),
    ([{"prefix": "10.0.0.0/33", "next_hop": "a"}], "routes[0]"),
    ([{"prefix": "10.0.0.0/8", "next_hop": ""}], "routes[0]: next_hop must be a non-empty string"),
    ([{"key": "a\x00b", "next_hop": "a"}], "routes[0]: key 'a\\x00b' contains a NUL byte"),
    ([{"key": 7, "next_hop": "a"}], "routes[0]: key must be a string"),
    ([{"key": "\ud800", "next_hop": "a"}], "routes[0]: key '\\ud800' is not valid UTF-8"),
    ([{"key": "x" * 5000, "next_hop": "a"}], "routes[0]: key is 5000 bytes long"),
    ([{"key": "k", "next_hop": 3}], "routes[0]: next_hop must be a non-empty string"),
])
def test_errors_name_the_first_bad_entry_as_before(bad, message):
    with pytest.raises(RouteError) as fast:
        parse_put({"routes": ENTRIES + bad}, 100)
    expected = None
    for i, o in enumerate(ENTRIES + bad):
        try:
            parse_route(o, f"routes[{i}]")
        except RouteError as exc:
            expected = exc
            break
    assert str(fast.value) == str(expected)
    assert message.replace("routes[0]", f"routes[{len(ENTRIES)}]").replace("routes[1]", f"routes[{len(ENTRIES) + 1}]") \
        in str(fast.value)


def test_a_delete_naming_a_route_twice_says_so_instead_of_no_route():
    body = {"routes": [{"key": "job-1"}, {"prefix": "10.0.0.0/8"}, {"prefix": "10.0.0.0/8", "next_hop": "a"}]}
    with pytest.raises(RouteError, match=r"routes\[2\]: '10.0.0.0/8' is named twice in one batch \(also routes\[1\]\)"):
        parse_delete(body, 100)
    assert len(parse_delete({"routes": [{"key": "job-1"}, {"key": "job-2"}]}, 100).deletes) == 2
