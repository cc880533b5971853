"""A PEP 517 backend in ~50 lines of stdlib: packs the [tool.wheel-backend] py-modules and the
[project] metadata and entry points of pyproject.toml into a pure-Python wheel."""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent


def _project() -> tuple[dict[str, Any], list[str]]:
    data = tomllib.loads((_HERE / "pyproject.toml").read_text("utf-8"))
    return data["project"], data["tool"]["wheel-backend"]["py-modules"]


def _files(project: dict[str, Any], modules: list[str]) -> dict[str, bytes]:
    name, version = project["name"], project["version"]
    info = f"{name.replace('-', '_')}-{version}.dist-info"
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                f"Summary: {project.get('description', '')}\n"
                f"Requires-Python: {project.get('requires-python', '>=3')}\n")
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
        for group, eps in project.get("entry-points", {}).items())
    files = {f"{m}.py": (_HERE / f"{m}.py").read_bytes() for m in modules}
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: wheel_backend\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{info}/entry_points.txt"] = entry_points.encode()
    return files


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def get_requires_for_build_wheel(config_settings: Any = None) -> list[str]:
    return []


def build_wheel(wheel_directory: str, config_settings: Any = None,
                metadata_directory: Any = None) -> str:
    project, modules = _project()
    files = _files(project, modules)
    stem = f"{project['name'].replace('-', '_')}-{project['version']}"
    record = f"{stem}.dist-info/RECORD"
    wheel = f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        lines = "".join(_record_line(p, d) for p, d in files.items()) + f"{record},,\n"
        zf.writestr(record, lines)
    return wheel
