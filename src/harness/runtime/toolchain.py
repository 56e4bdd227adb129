"""Finding and provisioning tools: cargo, redis-server, and what the lint and coverage sessions
need (actionlint, llvm-cov and llvm-profdata, cargo-llvm-cov); building services.

Missing tools are installed where that is safe and needs no prompt: Debian packages with apt-get
when we are root, actionlint with `go install` into a project-local bin directory, and
cargo-llvm-cov with `cargo install`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from harness.runtime import paths
from harness.runtime.config import StackConfig
from harness.runtime.process import ProcessError, run


class ToolMissing(ProcessError):
    """A tool the stack needs is absent and cannot be installed from here."""


REDIS_HINT = (
    "redis-server not found. `invoke setup` installs Debian's redis-server package when run as "
    "root; otherwise install Redis (e.g. `sudo apt-get install redis-server`) or point "
    "SWITCHYARD_REDIS_SERVER at the binary."
)


def redis_server() -> str:
    """The redis-server binary: $SWITCHYARD_REDIS_SERVER, else the one on PATH."""
    configured = os.environ.get("SWITCHYARD_REDIS_SERVER")
    if configured:
        if not Path(configured).is_file():
            raise ToolMissing(f"SWITCHYARD_REDIS_SERVER={configured} is not a file")
        return configured
    found = shutil.which("redis-server")
    if found is None:
        raise ToolMissing(REDIS_HINT)
    return found


def ensure_redis(say: Callable[[str], None]) -> str:
    """redis-server, installed with apt-get when missing and we are root on a Debian machine."""
    try:
        return redis_server()
    except ToolMissing:
        if not can_apt_install():
            raise
    apt_install("redis-server", say, REDIS_HINT)
    return redis_server()


def can_apt_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def apt_install(package: str, say: Callable[[str], None], hint: str) -> None:
    """`apt-get install -y package`, refreshing the package lists once if that fails."""
    say(f"installing {package} with apt-get")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    quiet = ["-qq", "-o", "Dpkg::Use-Pty=0"]
    if run(["apt-get", "install", "-y", *quiet, package], env=env) != 0:
        # A fresh machine has no package lists yet.
        run(["apt-get", "update", "-qq"], env=env)
        if run(["apt-get", "install", "-y", *quiet, package], env=env) != 0:
            raise ToolMissing(f"apt-get could not install {package}. {hint}")


def require(tool: str, hint: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise ToolMissing(f"{tool} not found on PATH. {hint}")
    return found


def check_cargo() -> str:
    return require(
        "cargo",
        "Install Rust with rustup (https://rustup.rs) or your package manager; "
        "the proxy needs cargo and rustc 1.85 or later.",
    )


def build_services(config: StackConfig, say: Callable[[str], None]) -> None:
    """Run each service's build command (cargo builds incrementally, so a fresh tree is quick)."""
    for service in config.services.values():
        if not service.build:
            continue
        if service.build[0] == "cargo":
            check_cargo()
        say(f"building {service.name}: {' '.join(service.build)}")
        code = run(service.build, cwd=config.root)
        if code != 0:
            raise ProcessError(f"building {service.name} failed (exit code {code})")


# ---------------------------------------------------------------------- lint and coverage tools

ACTIONLINT_MODULE = "github.com/rhysd/actionlint"
ACTIONLINT_VERSION = "v1.7.12"
GO_FALLBACK = Path("/usr/local/go/bin/go")
GO_HINT = (
    "actionlint is built with `go install`: install Go (https://go.dev/dl/) and put it on PATH, "
    f"or install actionlint {ACTIONLINT_VERSION} yourself into {{bin}}."
)

LLVM_VERSION = "19"
LLVM_HINT = (
    "coverage of the proxy needs llvm-cov and llvm-profdata that read rustc's coverage data: "
    f"install Debian's llvm-{LLVM_VERSION} package (`sudo apt-get install llvm-{LLVM_VERSION}`), "
    "or point LLVM_COV and LLVM_PROFDATA at them."
)
CARGO_LLVM_COV_VERSION = "0.9.1"


def tools_bin() -> Path:
    """Where the harness installs the tools it builds itself (gitignored with `.switchyard/`)."""
    return paths.state_dir() / "tools" / "bin"


def go() -> str:
    """The go command: on PATH, else the official tarball's place."""
    found = shutil.which("go") or (str(GO_FALLBACK) if GO_FALLBACK.is_file() else None)
    if found is None:
        raise ToolMissing("go not found. " + GO_HINT.format(bin=tools_bin()))
    return found


def installed_go_module_version(binary: Path) -> str | None:
    """The module version a Go binary was built from (`go version -m`), or None."""
    if not binary.is_file():
        return None
    lines: list[str] = []
    if run([go(), "version", "-m", str(binary)], on_output=lines.append) != 0:
        return None
    return go_module_version(lines)


def go_module_version(lines: list[str]) -> str | None:
    """The main module's version in `go version -m` output (its `mod` line)."""
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "mod":
            return fields[2]
    return None


def ensure_actionlint(say: Callable[[str], None]) -> str:
    """actionlint at the pinned version, installed with `go install` into tools_bin()."""
    binary = tools_bin() / "actionlint"
    if installed_go_module_version(binary) == ACTIONLINT_VERSION:
        return str(binary)
    tools_bin().mkdir(parents=True, exist_ok=True)
    target = f"{ACTIONLINT_MODULE}/cmd/actionlint@{ACTIONLINT_VERSION}"
    say(f"installing actionlint {ACTIONLINT_VERSION} with go install into {tools_bin()}")
    # GOTOOLCHAIN=local: build with the Go that is here, never fetch another toolchain.
    env = {"GOBIN": str(tools_bin()), "GOTOOLCHAIN": "local"}
    if run([go(), "install", target], env=env) != 0 or not binary.is_file():
        raise ToolMissing(f"go install {target} failed. " + GO_HINT.format(bin=tools_bin()))
    return str(binary)


def llvm_tools() -> dict[str, str]:
    """LLVM_COV and LLVM_PROFDATA for cargo-llvm-cov: as set in the environment; else rustup's
    llvm-tools component when it is installed (its LLVM is rustc's own); else Debian's
    llvm-19, whose tools read the profiles of the rustc this project uses."""
    names = {"LLVM_COV": "llvm-cov", "LLVM_PROFDATA": "llvm-profdata"}
    if any(variable in os.environ for variable in names):
        candidates = [{v: os.environ.get(v, "") for v in names}]
    else:
        candidates = [
            {v: str(directory / name) for v, name in names.items()}
            for directory in (*_rustup_llvm_dirs(), Path(f"/usr/lib/llvm-{LLVM_VERSION}/bin"))
        ]
    for tools in candidates:
        if all(Path(path).is_file() for path in tools.values()):
            return tools
    missing = ", ".join(path for path in candidates[-1].values() if not Path(path).is_file())
    raise ToolMissing(f"not found: {missing}. {LLVM_HINT}")


def _rustup_llvm_dirs() -> list[Path]:
    """Where rustup's llvm-tools component puts its binaries for the active toolchain."""
    rustc = shutil.which("rustc")
    if rustc is None:
        return []
    lines: list[str] = []
    if run([rustc, "-vV"], on_output=lines.append) != 0:
        return []
    hosts = [line.split(":", 1)[1].strip() for line in lines if line.startswith("host:")]
    sysroot: list[str] = []
    if not hosts or run([rustc, "--print", "sysroot"], on_output=sysroot.append) != 0:
        return []
    return [Path(sysroot[0].strip()) / "lib" / "rustlib" / hosts[0] / "bin"]


def ensure_llvm_tools(say: Callable[[str], None]) -> dict[str, str]:
    """llvm_tools(), installing Debian's llvm package first when they are missing and we can."""
    try:
        return llvm_tools()
    except ToolMissing:
        configured = "LLVM_COV" in os.environ or "LLVM_PROFDATA" in os.environ
        if configured or not can_apt_install():
            raise
    apt_install(f"llvm-{LLVM_VERSION}", say, LLVM_HINT)
    return llvm_tools()


def cargo_llvm_cov() -> str | None:
    """The cargo-llvm-cov binary: on PATH, else in cargo's own bin directory."""
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    candidate = cargo_home / "bin" / "cargo-llvm-cov"
    return shutil.which("cargo-llvm-cov") or (str(candidate) if candidate.is_file() else None)


def ensure_cargo_llvm_cov(say: Callable[[str], None]) -> str:
    """cargo-llvm-cov, installed with `cargo install --locked` when missing (a few minutes)."""
    found = cargo_llvm_cov()
    if found:
        return found
    check_cargo()
    say(f"installing cargo-llvm-cov {CARGO_LLVM_COV_VERSION} with cargo install (once)")
    command = ["cargo", "install", "cargo-llvm-cov", "--locked"]
    if run([*command, "--version", CARGO_LLVM_COV_VERSION]) != 0:
        raise ToolMissing("cargo install cargo-llvm-cov failed; install it by hand and retry")
    found = cargo_llvm_cov()
    if found is None:
        raise ToolMissing("cargo-llvm-cov was installed but is not on PATH nor in $CARGO_HOME/bin")
    return found
