"""The impairments' text form: every key and unit, presets, overrides, every error, and the round trip."""

import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nat.impair.model import ImpairmentError, Impairments, LinkImpairment
from nat.impair.presets import PRESETS
from nat.impair.spec import KEYS, format_link, parse_impairments_env, parse_link


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", LinkImpairment()),
        ("delay=40ms", LinkImpairment(delay_ms=40)),
        ("delay=0.5s", LinkImpairment(delay_ms=500)),
        ("delay=500us", LinkImpairment(delay_ms=0.5)),
        ("delay=40", LinkImpairment(delay_ms=40)),
        ("delay=1.1s", LinkImpairment(delay_ms=1100)),
        ("delay=10s", LinkImpairment(delay_ms=10_000)),
        ("jitter=5ms", LinkImpairment(jitter_ms=5)),
        ("reorder=25%", LinkImpairment(reorder=0.25)),
        ("loss=2%", LinkImpairment(loss=0.02)),
        ("loss=0.5%", LinkImpairment(loss=0.005)),
        ("loss=0.0001%", LinkImpairment(loss=0.000001)),
        ("loss=100%", LinkImpairment(loss=1.0)),
        ("loss=2% burst=3", LinkImpairment(loss=0.02, loss_burst=3)),
        ("loss=2% burst=1", LinkImpairment(loss=0.02, loss_burst=1)),
        ("duplicate=5%", LinkImpairment(duplicate=0.05)),
        ("rate=10mbit", LinkImpairment(rate_bps=10_000_000)),
        ("rate=10Mbit", LinkImpairment(rate_bps=10_000_000)),
        ("rate=1.5mbit", LinkImpairment(rate_bps=1_500_000)),
        ("rate=8kbit", LinkImpairment(rate_bps=8_000)),
        ("rate=64000bit", LinkImpairment(rate_bps=64_000)),
        ("rate=10gbit", LinkImpairment(rate_bps=10_000_000_000)),
        ("rate=0", LinkImpairment()),
        ("limit=500", LinkImpairment(limit=500)),
        ("delay=40ms   jitter=5ms\tloss=2%", LinkImpairment(delay_ms=40, jitter_ms=5, loss=0.02)),
        ("delay=40ms delay=80ms", LinkImpairment(delay_ms=80)),
        ("delay=40ms off", LinkImpairment()),
        ("delay=40ms none loss=1%", LinkImpairment(loss=0.01)),
        ("clear", LinkImpairment()),
        ("OFF", LinkImpairment()),
        ("Delay=40ms", LinkImpairment(delay_ms=40)),
    ],
)
def test_parse(text, expected):
    assert parse_link(text, "up") == expected


def test_a_preset_gives_each_direction_its_own_half():
    assert parse_link("lte", "up") == PRESETS["lte"].up
    assert parse_link("lte", "down") == PRESETS["lte"].down
    assert PRESETS["lte"].up != PRESETS["lte"].down


def test_later_tokens_override_a_preset_and_a_preset_replaces_what_came_before():
    assert parse_link("lte loss=5%", "down") == dataclasses.replace(PRESETS["lte"].down, loss=0.05)
    assert parse_link("lte rate=0", "up") == dataclasses.replace(PRESETS["lte"].up, rate_bps=0)
    assert parse_link("duplicate=5% dsl", "up") == PRESETS["dsl"].up


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "fast",
            "'fast': expected key=value (key delay, jitter, reorder, loss, burst, duplicate, rate, limit), "
            "a preset (cable, dsl, lossy-wifi, lte, satellite) or off",
        ),
        ("speed=10mbit", "'speed=10mbit': unknown key 'speed' (expected delay, jitter, reorder, loss, burst, "
         "duplicate, rate, limit)"),
        ("=5", "'=5': unknown key '' (expected delay, jitter, reorder, loss, burst, duplicate, rate, limit)"),
        ("delay=", "'delay=': expected a duration such as 40ms, 0.5s or 500us (a bare number is ms)"),
        ("delay=40m", "'delay=40m': expected a duration such as 40ms, 0.5s or 500us (a bare number is ms)"),
        ("delay=-5ms", "'delay=-5ms': expected a duration such as 40ms, 0.5s or 500us (a bare number is ms)"),
        ("jitter=11s", "'jitter=11s': at most 10s"),
        ("delay=10001ms", "'delay=10001ms': at most 10s"),
        ("loss=2", "'loss=2': expected a percentage with %, such as 2% or 0.5%"),
        ("loss=0.02", "'loss=0.02': expected a percentage with %, such as 2% or 0.5%"),
        ("reorder=101%", "'reorder=101%': at most 100%"),
        ("duplicate=0.00001%", "'duplicate=0.00001%': finer than 0.0001%, the smallest share the kernel's rules "
         "tell apart"),
        ("loss=2% burst=0.5", "'burst=0.5': expected a mean burst length from 1 to 1000 packets"),
        ("loss=2% burst=1001", "'burst=1001': expected a mean burst length from 1 to 1000 packets"),
        ("loss=2% burst=many", "'burst=many': expected the mean loss burst length in packets, a number such as 3"),
        ("burst=3", "burst=3 needs loss (e.g. loss=2% burst=3)"),
        ("loss=2% burst=3 loss=0%", "burst=3 needs loss (e.g. loss=2% burst=3)"),
        ("burst=2 loss=80%", "'loss=80%': loss in bursts of 2 packets can be at most 66.7%, got 80%"),
        ("rate=10mbps", "'rate=10mbps': byte units are ambiguous (tc reads mbps as megabytes per second); write "
         "bits: bit, kbit, mbit or gbit, such as 10mbit"),
        ("rate=1MB", "'rate=1MB': byte units are ambiguous (tc reads mbps as megabytes per second); write bits: "
         "bit, kbit, mbit or gbit, such as 10mbit"),
        ("rate=10", "'rate=10': expected a rate in bits with a unit: bit, kbit, mbit or gbit, such as 10mbit "
         "(0: unlimited)"),
        ("rate=7999bit", "'rate=7999bit': expected from 8kbit to 10gbit (0: unlimited)"),
        ("rate=11gbit", "'rate=11gbit': expected from 8kbit to 10gbit (0: unlimited)"),
        ("limit=1.5", "'limit=1.5': expected a whole number of packets (0: the default)"),
        ("limit=-1", "'limit=-1': expected a whole number of packets (0: the default)"),
        ("limit=100001", "'limit=100001': at most 100000 packets"),
    ],
)  # fmt: skip
def test_errors_name_the_token_and_what_was_expected(text, message):
    with pytest.raises(ImpairmentError) as caught:
        parse_link(text, "up")
    assert str(caught.value) == message


def test_the_direction_must_be_up_or_down():
    with pytest.raises(ImpairmentError, match="direction must be up or down, got 'both'"):
        parse_link("lte", "both")


@pytest.mark.parametrize(
    ("link", "text"),
    [
        (LinkImpairment(), "off"),
        (LinkImpairment(delay_ms=40, jitter_ms=5, loss=0.02), "delay=40ms jitter=5ms loss=2%"),
        (LinkImpairment(delay_ms=0.5, reorder=0.125), "delay=500us reorder=12.5%"),
        (LinkImpairment(loss=0.000001, loss_burst=2.5), "loss=0.0001% burst=2.5"),
        (LinkImpairment(duplicate=1.0, rate_bps=1_500_000, limit=20), "duplicate=100% rate=1500kbit limit=20"),
        (LinkImpairment(rate_bps=8_000_001), "rate=8000001bit"),
        (LinkImpairment(rate_bps=2_000_000_000), "rate=2gbit"),
    ],
)
def test_format_is_canonical(link, text):
    assert format_link(link) == text
    assert parse_link(text, "down") == link


def test_keys_cover_every_field_of_the_model_in_its_order():
    assert [key.field for key in KEYS.values()] == [field.name for field in dataclasses.fields(LinkImpairment)]


def _share(ppm_max=1_000_000):
    return st.integers(0, ppm_max).map(lambda ppm: ppm / 1_000_000)


@st.composite
def expressible_links(draw):
    """Every setting the text can say: durations in whole microseconds, shares in whole ppm, rates in bits."""
    loss = draw(_share())
    burst = 0.0
    if loss and loss < 0.5 and draw(st.booleans()):
        burst = draw(st.integers(1000, 1_000_000).map(lambda milli: milli / 1000))
    return LinkImpairment(
        delay_ms=draw(st.integers(0, 10_000_000)) / 1000,
        jitter_ms=draw(st.integers(0, 10_000_000)) / 1000,
        reorder=draw(_share()),
        loss=loss,
        loss_burst=burst,
        duplicate=draw(_share()),
        rate_bps=draw(st.one_of(st.just(0), st.integers(8_000, 10_000_000_000))),
        limit=draw(st.integers(0, 100_000)),
    )


@given(expressible_links(), st.sampled_from(["up", "down"]))
def test_round_trip(link, direction):
    assert parse_link(format_link(link), direction) == link


@given(st.text(alphabet=" =%.0123456789abcdeflmnorstuyz-", max_size=40))
def test_any_text_parses_or_raises_the_one_error(text):
    try:
        link = parse_link(text, "up")
    except ImpairmentError:
        return
    assert parse_link(format_link(link), "up") == link


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_well_formed_and_cite_a_source(name):
    preset = PRESETS[name]
    assert preset.name == name == name.lower()
    assert preset.summary
    assert preset.source
    for direction in ("up", "down"):
        link = preset.link(direction)
        assert not link.is_clear
        assert link.rate_bps, "every preset is an access link with a subscriber's rate"
        assert parse_link(format_link(link), direction) == link, "a preset is expressible as text"
    assert preset.down.rate_bps >= preset.up.rate_bps, "access links are asymmetric towards the subscriber"


def test_env_reads_both_directions_blank_is_off():
    assert parse_impairments_env({}) == Impairments()
    assert parse_impairments_env({"NAT_IMPAIR_UP": " ", "NAT_IMPAIR_DOWN": ""}) == Impairments()
    assert parse_impairments_env({"NAT_IMPAIR_UP": "delay=40ms", "NAT_IMPAIR_DOWN": "rate=10mbit"}) == Impairments(
        LinkImpairment(delay_ms=40), LinkImpairment(rate_bps=10_000_000)
    )
    assert parse_impairments_env({"NAT_IMPAIR_UP": "lte", "NAT_IMPAIR_DOWN": "lte"}) == Impairments(
        PRESETS["lte"].up, PRESETS["lte"].down
    )


@pytest.mark.parametrize("variable", ["NAT_IMPAIR_UP", "NAT_IMPAIR_DOWN"])
def test_env_error_names_the_variable(variable):
    with pytest.raises(ImpairmentError) as caught:
        parse_impairments_env({variable: "delay=40ms loss=2"})
    assert str(caught.value) == f"{variable}: 'loss=2': expected a percentage with %, such as 2% or 0.5%"


def test_the_readme_lists_every_preset_with_its_values():
    """The README's preset table is what the code does (a preset changed is a README row changed)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {
        m[1]: (m[2], m[3]) for m in re.finditer(r"^\| `([a-z-]+)` \| `([^`]+)` \| (`[^`]+`|the same) \|", readme, re.M)
    }
    for name, preset in PRESETS.items():
        up, down = format_link(preset.up), format_link(preset.down)
        assert rows.get(name) == (up, "the same" if up == down else f"`{down}`"), name
