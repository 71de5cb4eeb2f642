"""Verification policies, read from TOML, that fail closed.

A policy file has up to three tables, ``[snp]``, ``[tdx]`` and ``[sgx]``; any
other top-level key is an error. This module reads ``[snp]`` into an
``SnpPolicy``; the ``[tdx]`` and ``[sgx]`` tables are handed, as plain dicts,
to ``arx.attestation.intel``, which owns their schema.

Rules that make the policy fail closed:

* every checked field of ``SnpPolicy`` holds an explicit value or the explicit
  ``ANY``; nothing is "unset", so nothing is skipped by omission;
* a key missing from the file takes the value of ``SnpPolicy.baseline()``,
  which is itself explicit (and written out in docs/attestation.md);
* an unknown key is an error that names the key, so a misspelt constraint
  cannot silently become no constraint;
* DEBUG and MIGRATE_MA have no setting at all: such guests are always
  rejected, and a key that tries to allow them is an error.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from arx.attestation.snp import (
    CHIP_ID_SIZE,
    FAMILY_ID_SIZE,
    HOST_DATA_SIZE,
    IMAGE_ID_SIZE,
    KEY_DIGEST_SIZE,
    MAX_REPORT_VERSION,
    MEASUREMENT_SIZE,
    MIN_REPORT_VERSION,
    PLATFORM_INFO_BITS,
    TCB_COMPONENTS,
    Product,
    SigningKey,
)
from arx.errors import UsageError


class Any_(enum.Enum):
    """The explicit "any value is acceptable" marker (written ``"any"`` in TOML)."""

    ANY = "any"

    def __repr__(self) -> str:
        return "ANY"

    def __str__(self) -> str:
        return "any"


ANY: Final = Any_.ANY

Tri = bool | Any_
"""A flag constraint: True (must be set), False (must be clear) or ANY."""

# Guest POLICY flags a policy may constrain, with their POLICY bit numbers.
# DEBUG (19) and MIGRATE_MA (18) are deliberately absent: always rejected.
GUEST_POLICY_FLAGS: Final[Mapping[str, int]] = {
    "smt": 16,
    "single_socket": 20,
    "cxl_allow": 21,
    "mem_aes_256_xts": 22,
    "rapl_dis": 23,
    "ciphertext_hiding": 24,
    "page_swap_disable": 25,
}

FORBIDDEN_KEYS: Final = frozenset({"debug", "allow_debug", "migrate_ma", "allow_migrate_ma"})

VMPL_MAX: Final = 3
U8_MAX: Final = 0xFF
U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF


def _baseline_guest_policy() -> dict[str, Tri]:
    flags: dict[str, Tri] = dict.fromkeys(GUEST_POLICY_FLAGS, ANY)
    # CXL_ALLOW lets the host attach CXL memory or devices to the guest, which
    # the guest's memory encryption does not cover.
    flags["cxl_allow"] = False
    return flags


def _baseline_platform_info() -> dict[str, Tri]:
    flags: dict[str, Tri] = dict.fromkeys(PLATFORM_INFO_BITS, ANY)
    # ALIAS_CHECK_COMPLETE is the firmware's mitigation for BadRAM (AMD-SB-3015):
    # without it, a host with physical access can alias memory and break SNP.
    flags["alias_check_complete"] = True
    return flags


def _zero_tcb() -> dict[str, int]:
    return dict.fromkeys(TCB_COMPONENTS, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpPolicy:
    """What an SEV-SNP report must show to be accepted, beyond authenticity.

    Authenticity (chain to the anchors, signature, product, TCB and chip
    binding) is not configurable. DEBUG and MIGRATE_MA have no field: a guest
    with either is always rejected.
    """

    products: frozenset[Product] | Any_ = ANY
    signing_keys: frozenset[SigningKey] = frozenset(SigningKey)
    min_report_version: int = MIN_REPORT_VERSION
    vmpl: frozenset[int] | Any_ = frozenset({0})
    measurement: frozenset[bytes] | Any_ = ANY
    measurement_denylist: frozenset[bytes] = frozenset()
    host_data: frozenset[bytes] | Any_ = frozenset({bytes(HOST_DATA_SIZE)})
    family_id: frozenset[bytes] | Any_ = ANY
    image_id: frozenset[bytes] | Any_ = ANY
    id_key_digest: frozenset[bytes] | Any_ = ANY
    author_key_digest: frozenset[bytes] | Any_ = ANY
    chip_id: frozenset[bytes] | Any_ = ANY
    allow_masked_chip_id: bool = False
    min_guest_svn: int = 0
    min_policy_abi: tuple[int, int] = (0, 0)
    guest_policy: Mapping[str, Tri] = field(default_factory=_baseline_guest_policy)
    platform_info: Mapping[str, Tri] = field(default_factory=_baseline_platform_info)
    min_tcb: Mapping[str, int] = field(default_factory=_zero_tcb)
    min_launch_tcb: Mapping[str, int] = field(default_factory=_zero_tcb)
    min_firmware_api: tuple[int, int] = (0, 0)
    min_firmware_build: int = 0
    allow_provisional_firmware: bool = False
    required_mitigations: int = 0
    require_crl: bool = False

    @classmethod
    def baseline(cls) -> SnpPolicy:
        """Authenticity, debug off, no migration agent, VMPL 0, HOST_DATA zero,
        no CXL, the BadRAM alias check done, committed firmware equal to current,
        and the measurement reported but not constrained (explicitly ``ANY``)."""
        return cls()

    def with_changes(self, **changes: Any) -> SnpPolicy:
        """A copy with some fields replaced (for callers that build policies in code)."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """A parsed policy file: the SNP policy and the raw Intel tables."""

    snp: SnpPolicy
    tdx_table: dict[str, Any] | None = None
    sgx_table: dict[str, Any] | None = None


# ---------------------------------------------------------------------------
# Reading TOML
# ---------------------------------------------------------------------------


class _Reader:
    """Reads one table, remembering which keys were used, so leftovers are errors."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise UsageError(f"{source}: [{name}] must be a table")
        self.source = source
        self.name = name
        self.table: dict[str, Any] = table
        self.used: set[str] = set()
        for key in table:
            if key.lower() in FORBIDDEN_KEYS:
                raise UsageError(
                    f"{source}: [{name}] key {key!r} is not allowed: debug and migration-agent "
                    "guests are always rejected and no policy can allow them"
                )

    def error(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.source}: [{self.name}] {key}: {message}")

    def has(self, key: str) -> bool:
        return key in self.table

    def take(self, key: str) -> Any:
        self.used.add(key)
        return self.table[key]

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise UsageError(
                f"{self.source}: [{self.name}] unknown key {unknown[0]!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
            )

    # -- typed getters -------------------------------------------------------

    def boolean(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self.take(key)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        if not self.has(key):
            return default
        value = self.take(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be an integer from {low} to {high}")
        return value

    def tri(self, key: str, default: Tri) -> Tri:
        if not self.has(key):
            return default
        value = self.take(key)
        if value == "any":
            return ANY
        if not isinstance(value, bool):
            raise self.error(key, 'must be true (required), false (forbidden) or "any"')
        return value

    def version(self, key: str, default: tuple[int, int]) -> tuple[int, int]:
        if not self.has(key):
            return default
        value = self.take(key)
        parts = value.split(".") if isinstance(value, str) else []
        if len(parts) != 2 or not all(p.isdigit() and int(p) <= U8_MAX for p in parts):
            raise self.error(key, 'must be "MAJOR.MINOR" with each part from 0 to 255')
        return (int(parts[0]), int(parts[1]))

    def hex_set(
        self, key: str, default: frozenset[bytes] | Any_, size: int, *, allow_any: bool = True
    ) -> frozenset[bytes] | Any_:
        if not self.has(key):
            return default
        value = self.take(key)
        if value == "any" and allow_any:
            return ANY
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            hint = ' or "any"' if allow_any else ""
            raise self.error(key, f"must be a hex string or a list of hex strings{hint}")
        result = set()
        for item in items:
            try:
                decoded = bytes.fromhex(item)
            except ValueError as exc:
                raise self.error(key, f"{item!r} is not hex") from exc
            if len(decoded) != size:
                raise self.error(key, f"{item!r} is {len(decoded)} bytes, expected {size}")
            result.add(decoded)
        if allow_any and not result:
            raise self.error(key, 'an empty list would reject everything; use "any" or values')
        return frozenset(result)

    def sub(self, key: str) -> _Reader | None:
        if not self.has(key):
            return None
        return _Reader(self.source, f"{self.name}.{key}", self.take(key))


def _enum_set(
    reader: _Reader, key: str, enum_cls: type[enum.Enum], names: Mapping[str, Any]
) -> Any:
    value = reader.take(key)
    if value == "any":
        return ANY
    if not isinstance(value, list) or not value:
        raise reader.error(key, f'must be a non-empty list of {sorted(names)} or "any"')
    result = set()
    for item in value:
        if not isinstance(item, str) or item.lower() not in names:
            raise reader.error(key, f"{item!r} is not one of {sorted(names)}")
        result.add(names[item.lower()])
    return frozenset(result)


def parse_snp_table(table: Any, source: str = "policy") -> SnpPolicy:
    """Build an SnpPolicy from a parsed ``[snp]`` table; missing keys take the baseline."""
    base = SnpPolicy.baseline()
    r = _Reader(source, "snp", table)
    changes: dict[str, Any] = {}

    if r.has("products"):
        changes["products"] = _enum_set(
            r, "products", Product, {p.value.lower(): p for p in Product}
        )
    if r.has("signing_keys"):
        keys = _enum_set(r, "signing_keys", SigningKey, {k.name.lower(): k for k in SigningKey})
        if keys is ANY:
            keys = frozenset(SigningKey)
        changes["signing_keys"] = keys
    changes["min_report_version"] = r.integer(
        "min_report_version", base.min_report_version, MIN_REPORT_VERSION, MAX_REPORT_VERSION
    )
    if r.has("vmpl"):
        value = r.take("vmpl")
        items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if value == "any":
            changes["vmpl"] = ANY
        elif (
            isinstance(items, list)
            and items
            and all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= VMPL_MAX for i in items
            )
        ):
            changes["vmpl"] = frozenset(items)
        else:
            raise r.error(
                "vmpl", f'must be a VMPL 0-{VMPL_MAX}, a non-empty list of them, or "any"'
            )
    changes["measurement"] = r.hex_set("measurement", base.measurement, MEASUREMENT_SIZE)
    changes["measurement_denylist"] = r.hex_set(
        "measurement_denylist", base.measurement_denylist, MEASUREMENT_SIZE, allow_any=False
    )
    changes["host_data"] = r.hex_set("host_data", base.host_data, HOST_DATA_SIZE)
    changes["family_id"] = r.hex_set("family_id", base.family_id, FAMILY_ID_SIZE)
    changes["image_id"] = r.hex_set("image_id", base.image_id, IMAGE_ID_SIZE)
    changes["id_key_digest"] = r.hex_set("id_key_digest", base.id_key_digest, KEY_DIGEST_SIZE)
    changes["author_key_digest"] = r.hex_set(
        "author_key_digest", base.author_key_digest, KEY_DIGEST_SIZE
    )
    changes["chip_id"] = r.hex_set("chip_id", base.chip_id, CHIP_ID_SIZE)
    changes["allow_masked_chip_id"] = r.boolean("allow_masked_chip_id", base.allow_masked_chip_id)
    changes["min_guest_svn"] = r.integer("min_guest_svn", base.min_guest_svn, 0, U32_MAX)
    changes["min_policy_abi"] = r.version("min_policy_abi", base.min_policy_abi)
    changes["min_firmware_api"] = r.version("min_firmware_api", base.min_firmware_api)
    changes["min_firmware_build"] = r.integer(
        "min_firmware_build", base.min_firmware_build, 0, U8_MAX
    )
    changes["allow_provisional_firmware"] = r.boolean(
        "allow_provisional_firmware", base.allow_provisional_firmware
    )
    changes["required_mitigations"] = r.integer(
        "required_mitigations", base.required_mitigations, 0, U64_MAX
    )
    changes["require_crl"] = r.boolean("require_crl", base.require_crl)

    for key, names, baseline in (
        ("guest_policy", GUEST_POLICY_FLAGS, base.guest_policy),
        ("platform_info", PLATFORM_INFO_BITS, base.platform_info),
    ):
        flags = dict(baseline)
        sub = r.sub(key)
        if sub is not None:
            for name in names:
                flags[name] = sub.tri(name, flags[name])
            sub.finish()
        changes[key] = flags
    for key in ("min_tcb", "min_launch_tcb"):
        tcb = dict(getattr(base, key))
        sub = r.sub(key)
        if sub is not None:
            for name in TCB_COMPONENTS:
                tcb[name] = sub.integer(name, tcb[name], 0, U8_MAX)
            sub.finish()
        changes[key] = tcb

    r.finish()
    return replace(base, **changes)


POLICY_TABLES: Final = ("snp", "tdx", "sgx")


def parse_policy_text(text: str, source: str = "policy") -> PolicyFile:
    """Parse a whole policy document; raise UsageError naming what is wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - set(POLICY_TABLES))
    if unknown:
        raise UsageError(
            f"{source}: unknown top-level key {unknown[0]!r}; expected [snp], [tdx], [sgx]"
        )
    snp = parse_snp_table(document["snp"], source) if "snp" in document else SnpPolicy.baseline()
    tables: dict[str, dict[str, Any] | None] = {}
    for name in ("tdx", "sgx"):
        table = document.get(name)
        if table is not None and not isinstance(table, dict):
            raise UsageError(f"{source}: [{name}] must be a table")
        tables[name] = table
    return PolicyFile(snp=snp, tdx_table=tables["tdx"], sgx_table=tables["sgx"])


def load_policy_file(path: str | Path) -> PolicyFile:
    """Read and parse a policy file; raise UsageError if it cannot be read or is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read policy file {path}: {exc}") from exc
    return parse_policy_text(text, str(path))
