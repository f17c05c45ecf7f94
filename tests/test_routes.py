"""Route, key and node validation and route files: accepted right or rejected naming the problem."""

import pytest

from valkyrie.routes import ExactRoute, PrefixRoute, RouteError, load_route_file, parse_node, parse_prefix, parse_route

cases = [
    ("198.51.100.0/24", ("ipv4", bytes([198, 51, 100, 0]), 24)),
    ("0.0.0.0/0", ("ipv4", bytes(4), 0)),
    ("10.1.2.3", ("ipv4", bytes([10, 1, 2, 3]), 32)),
    ("2001:db8::/32", ("ipv6", bytes.fromhex("20010db8") + bytes(12), 32)),
    ("ci.build.", ("name", b"ci.build.", 72)),
    ("/api/v1/", ("name", b"/api/v1/", 64)),
    ("cafe.beef", ("name", b"cafe.beef", 72)),
    ("10.0.0.0/255.0.0.0", ("ipv4", bytes([10, 0, 0, 0]), 8)),  # a netmask is an IPv4 prefix, not a name
]


@pytest.mark.parametrize("text, parsed", cases)
def test_prefixes(text, parsed):
    assert parse_prefix(text) == parsed


@pytest.mark.parametrize("text, fragment", [
    ("10.0.0.0/33", "'33' is not a valid netmask"),
    ("300.1.1.1/8", "Octet 300"),
    ("10.0.0.1/8", "host bits set"),
    ("2001:db8::/129", "not a valid IPv6 prefix"),
    ("10.0.0.0/-8", "not a valid IPv4 prefix"),
    ("10.0.0.0/255.0.255.0", "not a valid IPv4 prefix"),
    ("a\x00b", "NUL"),
    ("", "empty"),
    ("x" * 1025, "limit is 1024"),
    ("\ud800", "UTF-8"),
])
def test_bad_prefixes_are_named(text, fragment):
    with pytest.raises(RouteError, match=fragment):
        parse_prefix(text)


def test_route_entries():
    assert parse_route({"prefix": "203.0.113.0/24", "next_hop": "a"}) == PrefixRoute("ipv4", bytes([203, 0, 113, 0]), 24, "a")
    assert parse_route({"key": "job-42", "next_hop": "a"}) == ExactRoute(b"job-42", "a")


@pytest.mark.parametrize("obj, fragment", [
    ({"prefix": "1.0.0.0/8"}, "missing next_hop"),
    ({"prefix": "1.0.0.0/8", "key": "k", "next_hop": "a"}, "exactly one"),
    ({"next_hop": "a"}, "exactly one"),
    ({"prefix": 5, "next_hop": "a"}, "must be a string"),
    ({"prefix": "1.0.0.0/8", "next_hop": 3}, "next_hop must be"),
    ({"prefix": "1.0.0.0/8", "next_hop": "a", "weight": 1}, "unknown field"),
    ([], "expected an object"),
])
def test_bad_route_entries(obj, fragment):
    with pytest.raises(RouteError, match=fragment):
        parse_route(obj, "routes[0]")


def test_nodes():
    assert parse_node({"id": "n", "address": "10.1.0.5:7000", "reliability": 65535}).address == "10.1.0.5:7000"
    for bad, fragment in [({"id": ""}, "id must be"), ({"id": "n", "address": "nohost"}, "host:port"),
                          ({"id": "n", "reliability": 70000}, "reliability"), ({"id": "n", "shard": True}, "shard")]:
        with pytest.raises(RouteError, match=fragment):
            parse_node(bad)


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("prefix,next_hop\n10.0.0.0/8,a\n10.0.0.0/33,a\n")
    with pytest.raises(RouteError, match=r"r\.csv:3: .*netmask"):
        load_route_file(path)


@pytest.mark.parametrize("row, fragment", [
    ("10.0.0.1/8,a", r"r\.csv:4: .*host bits set"),
    ("2001:db8::/129,a", r"r\.csv:4: .*IPv6"),
    ("10.0.0.0/8,", r"r\.csv:4: next_hop must be a non-empty string"),
    ("ci.\x00,a", r"r\.csv:4: .*NUL"),
])
def test_csv_rows_the_fast_parser_leaves_get_the_exact_error(tmp_path, row, fragment):
    path = tmp_path / "r.csv"
    path.write_text(f"prefix,next_hop\n10.0.0.0/8,a\n2001:db8::/32,b\n{row}\n")
    with pytest.raises(RouteError, match=fragment):
        load_route_file(path)


def test_csv_prefix_rows_parse_like_parse_route(tmp_path):
    rows = ["10.0.0.0/8", "198.51.100.7", "2001:db8::/32", "::ffff:192.0.2.0/120", "ci.build.", "cafe.beef", "10.0.0.0/08"]
    path = tmp_path / "r.csv"
    path.write_text("prefix,next_hop\n" + "".join(f"{r},hop-{i}\n" for i, r in enumerate(rows)))
    got = load_route_file(path)
    assert got.routes == [parse_route({"prefix": r, "next_hop": f"hop-{i}"}) for i, r in enumerate(rows)]
    assert got.where == [f"{path}:{n}" for n in range(2, 2 + len(rows))]


def test_csv_bad_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("net,hop\n")
    with pytest.raises(RouteError, match=r"r\.csv:1: header must be"):
        load_route_file(path)


def test_toml_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[nodes]]\nid = "a"\n\n[[routes]]\nprefix = "10.0.0.0/8"\nnext_hop = "a"\n\n[[routes]]\nprefix = "300.1.1.1/8"\nnext_hop = "a"\n')
    with pytest.raises(RouteError, match=r"r\.toml:8: .*Octet 300"):
        load_route_file(path)


def test_invalid_utf8_route_file(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"key,next_hop\nok,a\n\xff\xfe,a\n")
    with pytest.raises(RouteError, match=r"r\.csv:3: not valid UTF-8"):
        load_route_file(path)


def test_node_and_route_csv(tmp_path):
    (tmp_path / "n.csv").write_text("id,address,weight\nAS1,,\nAS2,10.0.0.1:80,5\n")
    nodes = load_route_file(tmp_path / "n.csv").nodes
    assert [n.id for n in nodes] == ["AS1", "AS2"] and nodes[1].weight == 5


def test_example_table_loads():
    from valkyrie.config import DEFAULT_CONFIG_PATH

    rs = load_route_file(DEFAULT_CONFIG_PATH.parent / "routes" / "example.toml")
    assert rs.default_route == "edge-default" and len(rs.routes) == 7
