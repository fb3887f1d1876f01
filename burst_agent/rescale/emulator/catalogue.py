"""The emulator's coretype catalogue (from JSON) and its table of analyses (software)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_OPENFOAM_CORETYPES = ["emerald", "onyx", "nickel", "carbon", "hpc-3", "test"]
_LAMMPS_CORETYPES = ["emerald", "onyx", "nickel", "carbon", "hpc-3", "gpu-tesla", "gpu-ampere", "test"]


def _version(
    version: str, code: str, allowed: list[str] | None, std: str = "", mpi: str = ""
) -> dict[str, Any]:
    # allowed None means "every coretype in the catalogue" (filled in by Catalogue).
    return {
        "eula": None,
        "allowedCoreTypes": allowed,
        "stdCommand": std,
        "version": version,
        "mpiCommand": mpi,
        "versionCode": code,
        "smpCommand": std,
    }


def _analysis(code: str, name: str, description: str, versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "industries": [],
        "code": code,
        "description": description,
        "versions": versions,
        "supportDesks": [],
        "hasRescaleLicense": False,
        "vendorName": "",
        "pricing": "",
        "hasShortTermLicense": False,
        "licenseSettings": [],
        "optimizerType": None,
        "thumbnail": "",
        "resources": [],
        "name": name,
    }


ANALYSES: tuple[dict[str, Any], ...] = (
    _analysis(
        "user_included",
        "Custom User-Defined Software",
        "Bring your own software.",
        [_version("0", "0", None)],
    ),
    _analysis(
        "openfoam",
        "OpenFOAM",
        "OpenFOAM CFD toolbox.",
        [
            _version(
                "2.3.1",
                "2.3.1-openmpi",
                _OPENFOAM_CORETYPES,
                "foamExec <module> <input-file>",
                "mpirun -np <mpi-ranks> foamExec <module> <input-file> -parallel",
            ),
            _version(
                "v2206",
                "v2206-openmpi",
                _OPENFOAM_CORETYPES,
                "foamExec <module> <input-file>",
                "mpirun -np <mpi-ranks> foamExec <module> <input-file> -parallel",
            ),
        ],
    ),
    _analysis(
        "lammps",
        "LAMMPS",
        "Molecular dynamics simulator.",
        [
            _version(
                "23Jun2022",
                "23Jun2022-intelmpi",
                _LAMMPS_CORETYPES,
                "lmp -in <input-file>",
                "mpirun -np <mpi-ranks> lmp -in <input-file>",
            ),
            _version(
                "2Aug2023",
                "2Aug2023-openmpi",
                _LAMMPS_CORETYPES,
                "lmp -in <input-file>",
                "mpirun -np <mpi-ranks> lmp -in <input-file>",
            ),
        ],
    ),
)


class CatalogueLoadError(ValueError):
    """The --coretypes file is unreadable or not a JSON list of coretype objects."""


def load_coretypes(path: Path | None) -> list[dict[str, Any]]:
    """The coretype objects served by /coretypes/: the embedded default or a user file."""
    try:
        if path is None:
            text = resources.files("burst_agent").joinpath("data/coretypes.json").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
        items = json.loads(text)
    except (OSError, ValueError) as exc:
        raise CatalogueLoadError(f"cannot load coretypes from {path or 'embedded default'}: {exc}") from exc
    if isinstance(items, dict) and isinstance(items.get("results"), list):
        items = items["results"]  # accept a saved API page too
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("code"), str) for i in items
    ):
        raise CatalogueLoadError("coretypes must be a JSON list of objects with a string `code`")
    return items


@dataclass(frozen=True)
class Catalogue:
    coretypes: dict[str, dict[str, Any]]
    analyses: dict[str, dict[str, Any]]

    @classmethod
    def build(cls, coretypes: list[dict[str, Any]]) -> Catalogue:
        codes = [c["code"] for c in coretypes]
        analyses = {}
        for item in ANALYSES:
            versions = [
                {**v, "allowedCoreTypes": list(v["allowedCoreTypes"] or codes)} for v in item["versions"]
            ]
            analyses[item["code"]] = {**item, "versions": versions}
        return cls({c["code"]: c for c in coretypes}, analyses)

    def find_version(self, code: str, version: str | None) -> dict[str, Any] | None:
        """A version matches by versionCode or by version name; no version means the first one."""
        versions = self.analyses[code]["versions"]
        if version is None:
            return versions[0]
        return next((v for v in versions if version in (v["versionCode"], v["version"])), None)
