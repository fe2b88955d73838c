"""What an app may cost per hour: an estimate from Modal's list prices, never a bill.

The table is dated and sourced so a reader can tell when it has gone stale; update all
three together. Prices are USD per hour of reservation: a container pays for its GPUs,
CPU cores and memory for as long as it runs, busy or idle.
"""

from __future__ import annotations

from dataclasses import dataclass

from endpointgen.spec.gpu import split

PRICES_DATE = "May 2026"
PRICES_SOURCE = "https://modal.com/pricing"
CURRENCY = "USD"

# USD per GPU-hour, as listed on modal.com/pricing.
GPU_HOURLY: dict[str, float] = {
    "B200": 6.25,
    "H200": 4.54,
    "H100": 3.95,
    "A100-80GB": 2.50,
    "A100-40GB": 2.10,
    "A100": 2.10,
    "L40S": 1.95,
    "A10": 1.10,
    "L4": 0.80,
    "T4": 0.59,
}
CPU_CORE_HOURLY = 0.047
MEMORY_GIB_HOURLY = 0.008

# Modal's multiplier on every price for a container pinned to a region (`region:`): a
# broad region (`us`, `eu`) or a narrower one (`us-east`, `us-east-1`). With a list, the
# smallest applies.
REGION_MULTIPLIER = {"broad": 1.5, "narrow": 1.75}

# What Modal reserves for a container when the spec sets no `resources`.
DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MIB = 128

NOTE = (
    f"Estimate from Modal list prices ({PRICES_SOURCE}, {PRICES_DATE}), in {CURRENCY} per "
    "hour: GPUs plus reserved CPU and memory per container. Not a bill: usage, "
    "discounts and credits change what you pay."
)

Range = tuple[float, float]


@dataclass(frozen=True)
class Cost:
    """Hourly cost of one app: per container, the always-on floor, and the ceiling.

    Each figure is a (low, high) range: equal ends unless the spec lists fallback GPUs.
    `ceiling` is None when `max_containers` is unset, since Modal then sets no limit.
    """

    gpu: str  # as the user reads it: "L40S", "H100:2 or A100-80GB:2", "none (CPU)"
    per_container: Range
    min_containers: int
    max_containers: int | None
    always_on: Range
    ceiling: Range | None

    def as_dict(self) -> dict[str, object]:
        return {
            "gpu": self.gpu,
            "per_container": list(self.per_container),
            "min_containers": self.min_containers,
            "max_containers": self.max_containers,
            "always_on": list(self.always_on),
            "ceiling": list(self.ceiling) if self.ceiling is not None else None,
        }


def gpu_hourly(name: str) -> float:
    """`"H100:2"` -> 7.9: the hourly price of all the GPUs one container holds."""
    kind, count = split(name)
    return GPU_HOURLY[kind] * count


def estimate(
    gpus: list[str] | None,
    cpu: float | None,
    memory_mib: int | None,
    min_containers: int | None,
    max_containers: int | None,
    region: str | list[str] | None = None,
) -> Cost:
    """The hourly cost of an app with these settings (a fallback list gives a range)."""
    base = (cpu or DEFAULT_CPU) * CPU_CORE_HOURLY + (
        (memory_mib or DEFAULT_MEMORY_MIB) / 1024
    ) * MEMORY_GIB_HOURLY
    gpu_prices = [gpu_hourly(g) for g in gpus] if gpus else [0.0]
    times = region_multiplier(region)
    per = (_round((base + min(gpu_prices)) * times), _round((base + max(gpu_prices)) * times))
    floor = min_containers or 0
    return Cost(
        gpu=" or ".join(gpus) if gpus else "none (CPU)",
        per_container=per,
        min_containers=floor,
        max_containers=max_containers,
        always_on=_times(per, floor),
        ceiling=_times(per, max_containers) if max_containers is not None else None,
    )


def region_multiplier(region: str | list[str] | None) -> float:
    """1 without a region; else Modal's multiplier for the broadest region named."""
    if not region:
        return 1.0
    names = [region] if isinstance(region, str) else region
    kinds = ["broad" if "-" not in name else "narrow" for name in names]
    return min(REGION_MULTIPLIER[kind] for kind in kinds)


def money(value: Range | None) -> str:
    """`(1.95, 3.95)` -> `$1.95-$3.95`; None -> `no limit`."""
    if value is None:
        return "no limit"
    low, high = (_dollars(v) for v in value)
    return low if low == high else f"{low}-{high}"


def _dollars(value: float) -> str:
    # Cents, unless that would round a small figure (CPU only) to zero.
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"


def _times(per: Range, count: int) -> Range:
    return (_round(per[0] * count), _round(per[1] * count))


def _round(value: float) -> float:
    return round(value, 4)
