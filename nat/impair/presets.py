"""Named impairments for the common access links: ``dsl``, ``cable``, ``lte``, ``satellite``, ``lossy-wifi``.

Each preset is one site's access link, both directions: its delay is the link's one-way share of the round
trip (a pair of impaired sites adds both), its rates are the subscriber's. The values come from public
measurements cited in ``source`` (and in the README's table); where a source gives a range or no figure, the
value is natlab's pick inside it, and ``source`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from nat.impair.model import LinkImpairment


@dataclass(frozen=True)
class Preset:
    name: str
    up: LinkImpairment
    """LAN -> WAN: what the site's hosts send."""
    down: LinkImpairment
    """WAN -> LAN: what they receive."""
    summary: str
    source: str

    def link(self, direction: str) -> LinkImpairment:
        return self.up if direction == "up" else self.down


MBIT = 1_000_000
FCC_MBA = "FCC, Measuring Broadband America (peak-period round trip to the ISP's nearest test server)"

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "dsl",
            up=LinkImpairment(delay_ms=25, jitter_ms=2, loss=0.002, rate_bps=1 * MBIT),
            down=LinkImpairment(delay_ms=25, jitter_ms=2, loss=0.002, rate_bps=8 * MBIT),
            summary="ADSL2+ line: 50 ms round trip, 8 Mbit/s down, 1 Mbit/s up, 0.2% loss",
            source=f"{FCC_MBA}: DSL averaged 49 ms; rates inside ITU-T G.992.5 (ADSL2+); loss natlab's pick "
            "inside the FCC's lowest peak-period loss band (under 0.4%)",
        ),
        Preset(
            "cable",
            up=LinkImpairment(delay_ms=16, jitter_ms=3, loss=0.001, rate_bps=10 * MBIT),
            down=LinkImpairment(delay_ms=16, jitter_ms=3, loss=0.001, rate_bps=100 * MBIT),
            summary="DOCSIS cable: 32 ms round trip, 100 Mbit/s down, 10 Mbit/s up, 0.1% loss",
            source=f"{FCC_MBA}: cable averaged 32 ms; a 100/10 Mbit/s tier and the loss are natlab's picks "
            "inside the FCC's tiers and lowest loss band",
        ),
        Preset(
            "lte",
            up=LinkImpairment(delay_ms=20, jitter_ms=8, loss=0.005, rate_bps=6 * MBIT),
            down=LinkImpairment(delay_ms=15, jitter_ms=5, loss=0.005, rate_bps=13 * MBIT),
            summary="4G LTE: 35 ms round trip with jitter, 13 Mbit/s down, 6 Mbit/s up, 0.5% loss",
            source="Huang et al., 'A Close Examination of Performance and Power Characteristics of 4G LTE "
            "Networks', MobiSys 2012: median 13 Mbit/s down, 6 Mbit/s up; Ookla Speedtest (US carriers): "
            "average latency 31-39 ms; the uplink's extra delay (scheduling requests), jitter and loss are "
            "natlab's picks",
        ),
        Preset(
            "satellite",
            up=LinkImpairment(delay_ms=300, jitter_ms=10, loss=0.001, rate_bps=3 * MBIT),
            down=LinkImpairment(delay_ms=300, jitter_ms=10, loss=0.001, rate_bps=25 * MBIT),
            summary="geostationary satellite: 600 ms round trip, 25 Mbit/s down, 3 Mbit/s up",
            source="geometry: a geostationary hop (35,786 km up and down) takes at least 239 ms one way, "
            "plus gateway and scheduling; 25/3 Mbit/s is the FCC's broadband benchmark that GEO operators "
            "(ViaSat) sell to; jitter and loss are natlab's picks",
        ),
        Preset(
            "lossy-wifi",
            up=LinkImpairment(delay_ms=3, jitter_ms=3, loss=0.03, loss_burst=3, rate_bps=20 * MBIT),
            down=LinkImpairment(delay_ms=3, jitter_ms=3, loss=0.03, loss_burst=3, rate_bps=20 * MBIT),
            summary="a weak Wi-Fi hop: 3% loss in bursts of about 3 packets, jittery, 20 Mbit/s",
            source="Aguayo et al., 'Link-level Measurements from an 802.11b Mesh Network', SIGCOMM 2004: "
            "intermediate loss rates are common and some links lose in bursts; the figures are natlab's picks",
        ),
    )
}
