"""Strict validation of a job create body; errors map field paths to lists of messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from burst_agent.rescale.emulator.catalogue import Catalogue

# Rescale enforces a workspace maximum walltime; the emulator uses 30 days. It also catches a
# walltime sent in seconds by mistake (1 h * 3600 = 3600 > 720).
MAX_WALLTIME_HOURS = 720
# The document's job-level billingPriorityValue options (null: the field's default, None).
BILLING_PRIORITIES = ("INSTANT", "ON_DEMAND", "RESERVED")
REQUIRED = "This field is required."
BLANK = "This field may not be blank."

Errors = dict[str, list[str]]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Checker:
    def __init__(
        self, catalogue: Catalogue, file_exists: Callable[[str], bool], project_exists: Callable[[str], bool]
    ) -> None:
        self.catalogue = catalogue
        self.file_exists = file_exists
        self.project_exists = project_exists
        self.errors: Errors = {}

    def add(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def string(self, obj: dict[str, Any], key: str, path: str, required: bool = True) -> str | None:
        if key not in obj or obj[key] is None:
            if required:
                self.add(path, REQUIRED if key not in obj else "This field may not be null.")
            return None
        value = obj[key]
        if not isinstance(value, str):
            self.add(path, "Not a valid string.")
            return None
        if required and not value.strip():
            self.add(path, BLANK)
            return None
        return value

    def boolean(self, obj: dict[str, Any], key: str, path: str) -> None:
        if key in obj and not isinstance(obj[key], bool):
            self.add(path, "Must be a valid boolean.")

    def job(self, body: Any) -> None:
        if not isinstance(body, dict):
            self.add(
                "non_field_errors", f"Invalid data. Expected a dictionary, but got {type(body).__name__}."
            )
            return
        self.string(body, "name", "name")
        for key in ("isLowPriority", "isTemplateDryRun", "includeNominalRun"):
            self.boolean(body, key, key)
        priority = body.get("billingPriorityValue")
        if priority is not None and priority not in BILLING_PRIORITIES:
            self.add("billingPriorityValue", f"{_shown(priority)} is not a valid choice; expected one of "
                                             f"{', '.join(BILLING_PRIORITIES)}.")
        if body.get("projectId") is not None and (
            not isinstance(body["projectId"], str) or not self.project_exists(body["projectId"])
        ):
            self.add("projectId", f"Unknown project {body['projectId']!r}.")
        analyses = body.get("jobanalyses")
        if analyses is None:
            self.add("jobanalyses", REQUIRED)
        elif not isinstance(analyses, list):
            self.add("jobanalyses", f'Expected a list of items but got type "{type(analyses).__name__}".')
        elif not analyses:
            self.add("jobanalyses", "This list may not be empty.")
        else:
            for index, item in enumerate(analyses):
                self.job_analysis(item, f"jobanalyses[{index}]")

    def job_analysis(self, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            self.add(path, "Invalid data. Expected a dictionary.")
            return
        self.string(item, "command", f"{path}.command")
        for key in ("useMpi", "useRescaleLicense"):
            self.boolean(item, key, f"{path}.{key}")
        env = item.get("envVars")
        if env is not None and not (
            isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            self.add(f"{path}.envVars", "Must be an object mapping names to string values.")
        allowed = self.analysis(item.get("analysis"), f"{path}.analysis")
        self.hardware(item.get("hardware"), f"{path}.hardware", allowed)
        self.input_files(item.get("inputFiles"), f"{path}.inputFiles")

    def analysis(self, analysis: Any, path: str) -> list[str] | None:
        if analysis is None:
            self.add(path, REQUIRED)
            return None
        if not isinstance(analysis, dict):
            self.add(path, "Invalid data. Expected a dictionary.")
            return None
        code = self.string(analysis, "code", f"{path}.code")
        version = self.string(analysis, "version", f"{path}.version", required=False)
        if code is None:
            return None
        if code not in self.catalogue.analyses:
            self.add(f"{path}.code", f"Unknown analysis code {code!r}.")
            return None
        if "version" in analysis and not isinstance(analysis["version"], str | None):
            return None
        found = self.catalogue.find_version(code, version)
        if found is None:
            self.add(f"{path}.version", f"Unknown version {version!r} of analysis {code!r}.")
            return None
        return found["allowedCoreTypes"]

    def hardware(self, hardware: Any, path: str, allowed: list[str] | None) -> None:
        if hardware is None:
            self.add(path, REQUIRED)
            return
        if not isinstance(hardware, dict):
            self.add(path, "Invalid data. Expected a dictionary.")
            return
        if "coreClass" in hardware and "coreType" not in hardware:
            self.add(f"{path}.coreClass", "Coretype sets are not supported by the emulator; use coreType.")
            return
        code = self.string(hardware, "coreType", f"{path}.coreType")
        coretype = self.catalogue.coretypes.get(code) if code else None
        if code and coretype is None:
            self.add(f"{path}.coreType", f"Unknown coretype {code!r}.")
        elif coretype is not None and coretype.get("isDeprecated"):
            self.add(
                f"{path}.coreType", f"Coretype {code!r} is deprecated and cannot be used to submit jobs."
            )
        elif coretype is not None and allowed is not None and code not in allowed:
            self.add(f"{path}.coreType", f"Coretype {code!r} is not allowed for this analysis version.")
        cores = hardware.get("coresPerSlot")
        if cores is None:
            self.add(f"{path}.coresPerSlot", REQUIRED)
        elif not _is_int(cores):
            self.add(f"{path}.coresPerSlot", "A valid integer is required.")
        elif coretype is not None and cores not in coretype.get("cores", []):
            sizes = ", ".join(str(c) for c in coretype.get("cores", []))
            self.add(
                f"{path}.coresPerSlot",
                f"{cores} is not a valid core count for {code!r}; choose one of: {sizes}.",
            )
        slots = hardware.get("slots", 1)
        if not _is_int(slots):
            self.add(f"{path}.slots", "A valid integer is required.")
        elif slots < 1:
            self.add(f"{path}.slots", "Ensure this value is greater than or equal to 1.")
        self.walltime(hardware.get("walltime"), f"{path}.walltime", coretype)

    def walltime(self, walltime: Any, path: str, coretype: dict[str, Any] | None) -> None:
        if walltime is None:
            if coretype is not None and coretype.get("walltimeRequired"):
                self.add(path, "This coretype requires a walltime (hours).")
        elif not _is_number(walltime):
            self.add(path, "A valid number of hours is required.")
        elif walltime <= 0:
            self.add(path, "Walltime must be a positive number of hours.")
        elif walltime > MAX_WALLTIME_HOURS:
            self.add(
                path,
                f"Walltime is in hours and may not exceed {MAX_WALLTIME_HOURS} (was it sent in seconds?).",
            )

    def input_files(self, files: Any, path: str) -> None:
        if files is None:
            return
        if not isinstance(files, list):
            self.add(path, f'Expected a list of items but got type "{type(files).__name__}".')
            return
        for index, ref in enumerate(files):
            item_path = f"{path}[{index}].id"
            file_id = ref.get("id") if isinstance(ref, dict) else None
            if not isinstance(file_id, str):
                self.add(item_path, "An object with a string file `id` is required.")
            elif not self.file_exists(file_id):
                self.add(item_path, f"File {file_id!r} does not exist.")


def validate_job_body(
    body: Any, catalogue: Catalogue, file_exists: Callable[[str], bool], project_exists: Callable[[str], bool]
) -> Errors:
    """All problems with a POST /jobs/ body, keyed like `jobanalyses[0].hardware.coresPerSlot`."""
    checker = _Checker(catalogue, file_exists, project_exists)
    checker.job(body)
    return checker.errors
