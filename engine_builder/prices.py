"""The default price and power table of `edge-qwq plan` (engine_builder.cost), with its sources.

Every figure here is a default the user overrides with `--price-file F` (JSON or YAML, the same shape, any
part of it) or `--energy-price`; `plan` prints the table it used and writes it into its JSON. Currency: US
dollars (NVIDIA and the cloud list their prices in USD). Compiled 2026-11 from the sources named below,
without network access to recheck them: prices change, so check current offers before buying.

Edge modules (`price`: bought once, amortised over `--years`):
- Jetson module prices are NVIDIA's list prices per module at 1,000-unit volume, as announced with the
  production modules (AGX Orin: GTC March 2022; Orin NX and Orin Nano: GTC September 2022) and shown in
  NVIDIA's Jetson module comparison: AGX Orin 64GB USD 1,599, Orin NX 16GB USD 599, Orin Nano 8GB USD 299.
  The module only: a carrier board, enclosure, power supply and cameras are not included (add them to
  `price` in your file; a developer kit is a different product at a different price).
- Power is the module power mode the latency estimate assumes (engine_builder.targets): AGX Orin 64GB MAXN
  60 W (Jetson AGX Orin Series Technical Brief v1.2: 15-60 W), Orin NX 16GB MAXN 25 W (Orin NX Series Data
  Sheet DS-10712-001: 10-25 W), Orin Nano 8GB 15 W (Orin Nano Series Data Sheet DS-11105-001: 7-15 W; the
  JetPack 6.2 "Super" 25 W mode is not what the estimate models).

Data-centre comparison (`hourly`: rented per device-hour, host and power included):
- NVIDIA L4 as AWS EC2 g6.xlarge (1 x L4 24 GB, 4 vCPU, 16 GiB), On-Demand, Linux, us-east-1: USD 0.8048
  per hour on the AWS EC2 On-Demand pricing page (2024-2025 listing). `power_w` is the card's 72 W (NVIDIA
  L4 datasheet), shown but not charged: the hourly price includes power. To compare an L4 bought for your
  own server instead, give `price` (card plus a share of the host) in place of `hourly`.

Energy: 0.20 USD per kWh, a round default between the 2024 US commercial average (about 0.13 USD, EIA) and
the EU non-household average (about 0.20 EUR, Eurostat); set your tariff with `--energy-price`.
Operating hours: 8,760 per year (a line inspected 24 h a day, 365 days).
"""
from __future__ import annotations

import copy

JETSON_PRICE_SOURCE = ("NVIDIA list price per module at 1,000-unit volume (production-module announcements, "
                       "GTC 2022; NVIDIA Jetson module comparison)")

DEFAULT_PRICES: dict = {
    "currency": "USD",
    "energy_price_per_kwh": 0.20,
    "hours_per_year": 8760.0,
    "compiled": "2026-11, from the sources named per device; prices change: check current offers",
    "energy_source": ("round default between the 2024 US commercial average (~0.13 USD/kWh, EIA) and the EU "
                      "non-household average (~0.20 EUR/kWh, Eurostat); override with --energy-price"),
    "devices": {
        "orin-agx": {
            "name": "Jetson AGX Orin 64GB", "price": 1599.0, "power_w": 60.0, "power_mode": "MAXN 60 W",
            "support_per_year": 0.0,
            "what": "module only (no carrier board, enclosure or power supply)",
            "source": f"{JETSON_PRICE_SOURCE}; power: Jetson AGX Orin Series Technical Brief v1.2 (15-60 W)",
        },
        "orin-nx": {
            "name": "Jetson Orin NX 16GB", "price": 599.0, "power_w": 25.0, "power_mode": "MAXN 25 W",
            "support_per_year": 0.0,
            "what": "module only (no carrier board, enclosure or power supply)",
            "source": f"{JETSON_PRICE_SOURCE}; power: Jetson Orin NX Series Data Sheet DS-10712-001 (10-25 W)",
        },
        "orin-nano": {
            "name": "Jetson Orin Nano 8GB", "price": 299.0, "power_w": 15.0, "power_mode": "15 W",
            "support_per_year": 0.0,
            "what": "module only (no carrier board, enclosure or power supply)",
            "source": f"{JETSON_PRICE_SOURCE}; power: Jetson Orin Nano Series Data Sheet DS-11105-001 (7-15 W)",
        },
        "l4": {
            "name": "NVIDIA L4 (AWS g6.xlarge, on demand)", "hourly": 0.8048, "power_w": 72.0,
            "power_mode": "72 W TDP (in the hourly price)", "support_per_year": 0.0,
            "what": "rented: 1 x L4 24 GB, 4 vCPU, 16 GiB; host, power and cooling in the hourly price",
            "source": ("AWS EC2 On-Demand pricing, Linux, us-east-1, g6.xlarge USD 0.8048/h (2024-2025 listing); "
                       "power: NVIDIA L4 Tensor Core GPU datasheet (72 W)"),
        },
    },
}


def default_prices() -> dict:
    """A deep copy of the default table (callers may change it)."""
    return copy.deepcopy(DEFAULT_PRICES)
