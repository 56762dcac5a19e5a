"""Parsing ``conntrack -L -o xml``: golden samples captured from a real router netns (kernel 6.18,
conntrack-tools 1.4.7) running natlab's rendered rulesets, addresses in 198.19.200.0/24 (WAN) and
198.19.201.0/24 (LAN); the router's WAN address is 198.19.200.1."""

import json

import pytest

from nat.conntrack import ConntrackError, Endpoints, Entry, parse_xml

# cone, NAT_UDP_TIMEOUT=11: an unreplied probe, an ASSURED flow (replies more than 2 s apart) and a replied
# one; the WAN side sees port 40000 for both destinations.
CONE_SAMPLE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    "<conntrack>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40002</sport>'
    '<dport>5999</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.3</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5999</sport><dport>40002</dport></layer4></meta>'
    '<meta direction="independent"><timeout>7</timeout><mark>0</mark><use>1</use><id>1462074246</id>'
    "<unreplied/></meta></flow>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40000</sport>'
    '<dport>5000</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.2</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5000</sport><dport>40000</dport></layer4></meta>'
    '<meta direction="independent"><timeout>7</timeout><mark>0</mark><use>1</use><id>3241301439</id>'
    "<assured/></meta></flow>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40000</sport>'
    '<dport>5001</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.3</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5001</sport><dport>40000</dport></layer4></meta>'
    '<meta direction="independent"><timeout>5</timeout><mark>0</mark><use>1</use><id>2733037372</id>'
    "</meta></flow>\n"
    "</conntrack>\n"
)

# symmetric, NAT_UDP_TIMEOUT=7: one LAN port, three destinations, three random external ports.
SYMMETRIC_SAMPLE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    "<conntrack>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40000</sport>'
    '<dport>5000</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.2</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5000</sport><dport>36238</dport></layer4></meta>'
    '<meta direction="independent"><timeout>2</timeout><mark>0</mark><use>1</use><id>821356850</id>'
    "</meta></flow>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40001</sport>'
    '<dport>5000</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.2</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5000</sport><dport>6472</dport></layer4></meta>'
    '<meta direction="independent"><timeout>5</timeout><mark>0</mark><use>1</use><id>1617104685</id>'
    "<unreplied/></meta></flow>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.2</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40000</sport>'
    '<dport>5999</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.2</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5999</sport><dport>35642</dport></layer4></meta>'
    '<meta direction="independent"><timeout>2</timeout><mark>0</mark><use>1</use><id>2424982502</id>'
    "<unreplied/></meta></flow>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.3</dst></layer3><layer4 protonum="17" protoname="udp"><sport>40000</sport>'
    '<dport>5001</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.3</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="17" protoname="udp"><sport>5001</sport><dport>25135</dport></layer4></meta>'
    '<meta direction="independent"><timeout>2</timeout><mark>0</mark><use>1</use><id>3603932108</id>'
    "</meta></flow>\n"
    "</conntrack>\n"
)

# cone, a TCP connection closing: TCP has a protocol state.
TCP_SAMPLE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    "<conntrack>\n"
    '<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>198.19.201.2</src>'
    '<dst>198.19.200.2</dst></layer3><layer4 protonum="6" protoname="tcp"><sport>38368</sport>'
    '<dport>5000</dport></layer4></meta><meta direction="reply">'
    '<layer3 protonum="2" protoname="ipv4"><src>198.19.200.2</src><dst>198.19.200.1</dst></layer3>'
    '<layer4 protonum="6" protoname="tcp"><sport>5000</sport><dport>38368</dport></layer4></meta>'
    '<meta direction="independent"><state>FIN_WAIT</state><timeout>119</timeout><mark>0</mark>'
    "<use>1</use><id>2216660955</id><assured/></meta></flow>\n"
    "</conntrack>\n"
)

EMPTY_SAMPLE = ""  # an empty table: conntrack prints no XML at all, only "0 flow entries" on stderr


def test_cone_sample_parses_to_entries():
    entries = parse_xml(CONE_SAMPLE)
    assert entries == [
        Entry(
            proto="udp",
            orig=Endpoints("198.19.201.2", 40002, "198.19.200.3", 5999),
            reply=Endpoints("198.19.200.3", 5999, "198.19.200.1", 40002),
            state=None,
            flags=("UNREPLIED",),
            timeout=7,
        ),
        Entry(
            proto="udp",
            orig=Endpoints("198.19.201.2", 40000, "198.19.200.2", 5000),
            reply=Endpoints("198.19.200.2", 5000, "198.19.200.1", 40000),
            state=None,
            flags=("ASSURED",),
            timeout=7,
        ),
        Entry(
            proto="udp",
            orig=Endpoints("198.19.201.2", 40000, "198.19.200.3", 5001),
            reply=Endpoints("198.19.200.3", 5001, "198.19.200.1", 40000),
            state=None,
            flags=(),
            timeout=5,
        ),
    ]


def test_cone_preserved_the_port_towards_both_destinations():
    mapped = {(e.orig.dst, e.reply.dport) for e in parse_xml(CONE_SAMPLE) if e.orig.sport == 40000}
    assert mapped == {("198.19.200.2", 40000), ("198.19.200.3", 40000)}


def test_symmetric_sample_maps_each_destination_to_its_own_port():
    entries = [e for e in parse_xml(SYMMETRIC_SAMPLE) if e.orig.sport == 40000]
    assert [(e.orig.dst, e.orig.dport, e.reply.dport) for e in entries] == [
        ("198.19.200.2", 5000, 36238),
        ("198.19.200.2", 5999, 35642),
        ("198.19.200.3", 5001, 25135),
    ]
    assert [e.flags for e in entries] == [(), ("UNREPLIED",), ()]


def test_tcp_sample_has_a_state():
    [entry] = parse_xml(TCP_SAMPLE)
    assert (entry.proto, entry.state, entry.flags, entry.timeout) == ("tcp", "FIN_WAIT", ("ASSURED",), 119)


def test_empty_table():
    assert parse_xml(EMPTY_SAMPLE) == []
    assert parse_xml('<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n</conntrack>\n') == []


def test_json_shape_is_what_scenarios_read():
    entry = parse_xml(CONE_SAMPLE)[1]
    assert json.loads(json.dumps(entry.as_dict())) == {
        "proto": "udp",
        "orig": {"src": "198.19.201.2", "sport": 40000, "dst": "198.19.200.2", "dport": 5000},
        "reply": {"src": "198.19.200.2", "sport": 5000, "dst": "198.19.200.1", "dport": 40000},
        "state": None,
        "flags": ["ASSURED"],
        "timeout": 7,
    }


def test_describe_shows_the_mapped_endpoint():
    lines = [entry.describe() for entry in parse_xml(CONE_SAMPLE)]
    assert lines == [
        "udp 198.19.201.2:40002 -> 198.19.200.3:5999 via 198.19.200.1:40002 [UNREPLIED] 7s",
        "udp 198.19.201.2:40000 -> 198.19.200.2:5000 via 198.19.200.1:40000 [ASSURED] 7s",
        "udp 198.19.201.2:40000 -> 198.19.200.3:5001 via 198.19.200.1:40000 5s",
    ]
    assert parse_xml(TCP_SAMPLE)[0].describe().endswith("FIN_WAIT [ASSURED] 119s")


def flow(original, reply, independent):
    return f"<conntrack><flow>{original}{reply}{independent}</flow></conntrack>"


def direction(name, src, dst, layer4):
    return f'<meta direction="{name}"><layer3><src>{src}</src><dst>{dst}</dst></layer3>{layer4}</meta>'


def test_portless_protocol_and_valued_elements_are_not_flags():
    # Synthetic, in libnetfilter_conntrack's format: ICMP has no ports; <counters> has children and
    # <zone> a value, so neither is a flag.
    icmp = '<layer4 protonum="1" protoname="icmp"><type>8</type><code>0</code><id>7</id></layer4>'
    counters = "<counters><packets>1</packets><bytes>84</bytes></counters>"
    text = flow(
        direction("original", "198.19.201.2", "198.19.200.2", icmp + counters),
        direction("reply", "198.19.200.2", "198.19.200.1", icmp),
        '<meta direction="independent"><timeout>29</timeout><zone>3</zone><unreplied/></meta>',
    )
    [entry] = parse_xml(text)
    assert entry.orig == Endpoints("198.19.201.2", None, "198.19.200.2", None)
    assert (entry.proto, entry.flags) == ("icmp", ("UNREPLIED",))
    assert entry.describe() == "icmp 198.19.201.2 -> 198.19.200.2 via 198.19.200.1 [UNREPLIED] 29s"


UDP = '<layer4 protonum="17" protoname="udp"><sport>1</sport><dport>2</dport></layer4>'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<conntrack><flow>", "malformed XML"),
        ("<flows/>", r"root <flows>, expected <conntrack>"),
        (flow(direction("original", "a", "b", UDP), "", ""), "without a 'reply' direction"),
        (flow(direction("original", "a", "b", ""), direction("reply", "b", "c", UDP), ""), "no <layer4>"),
        (flow(direction("original", "", "b", UDP), direction("reply", "b", "c", UDP), ""), "no <src>"),
        (
            flow(
                direction("original", "a", "b", UDP.replace(">1<", ">one<")),
                direction("reply", "b", "c", UDP),
                "",
            ),
            "non-numeric sport: 'one'",
        ),
    ],
)
def test_malformed_output_raises_conntrack_error(text, message):
    with pytest.raises(ConntrackError, match=message):
        parse_xml(text)
