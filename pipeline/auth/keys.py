"""CurveZMQ key files, on pyzmq's ``zmq.auth`` (no crypto of our own).

Key files are pyzmq certificates (``zmq.auth.create_certificates``): ``NAME.key`` holds a public key,
``NAME.key_secret`` the public and the secret key. :func:`generate_key_pair` writes them with the
secret file 0600 and never overwrites a key.

The user's private directory (:func:`private_dir`, mode 0700) holds the key pair of the user's own
monitor, which a run of the same user reads (:func:`own_key_pair`).
"""

from __future__ import annotations

import logging
import os
import re
import reprlib
import shlex
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from pipeline.errors import COMMAND_LINE, ConfigError

log = logging.getLogger("pipeline.auth")

#: The endings of a public key file and of its secret key file (pyzmq's names).
PUBLIC_SUFFIX, SECRET_SUFFIX = ".key", ".key_secret"
#: The name of the user's own key pair in the private directory (the monitor's, read by the runs).
OWN_KEY_NAME = "monitor"

#: What a refusal to overwrite says.
_EXISTS = "exists: a key is never overwritten (remove it first, or choose another name)"
#: A key name is a file name without a directory: letters, digits, '.', '_' and '-', not starting with '.'.
_KEY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")  # its files' names fit in 255 bytes


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair as z85 bytes; ``secret`` is None for a public key alone; ``name`` the file's stem."""

    public: bytes
    secret: bytes | None
    name: str


def check_key_name(name: str, option: str = "NAME") -> str:
    """``name`` if it can name a key file; a ConfigError otherwise."""
    if not _KEY_NAME.fullmatch(name):
        raise ConfigError(COMMAND_LINE, option,
                          "expected a key name of at most 128 letters, digits, '.', '_' or '-' (no '/', not starting "
                          f"with '.'), got {reprlib.repr(name)}")
    return name


def key_paths(directory: str | Path, name: str) -> tuple[Path, Path]:
    """The public and the secret key file of key ``name`` in ``directory``."""
    directory = Path(directory)
    return directory / f"{name}{PUBLIC_SUFFIX}", directory / f"{name}{SECRET_SUFFIX}"


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _load(path: str | Path, option: str) -> KeyPair:
    path = Path(path)
    mode = _mode(path, option)
    if mode is None or not stat.S_ISREG(mode):  # a folder, a device or a FIFO (reading one would wait for ever)
        what = "no such file" if mode is None else "is a folder" if stat.S_ISDIR(mode) else "is not a regular file"
        raise ConfigError(str(path), option, f"{what}: expected a key file made by pipeline-keys")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as err:
        raise ConfigError(str(path), option, f"cannot read the key file ({err.strerror or err})") from err
    except ValueError as err:
        raise ConfigError(str(path), option, f"not a CURVE key file made by pipeline-keys or pyzmq ({err})") from err
    if len(public) != 40 or (secret is not None and len(secret) != 40):
        raise ConfigError(str(path), option, "expected z85 keys of 40 characters")
    return KeyPair(public, secret, _stem(path))


def load_public_key(path: str | Path, option: str = "") -> KeyPair:
    """The public key in ``path`` (a ``.key`` file, or a ``.key_secret`` file, whose secret is then left out)."""
    pair = _load(path, option)
    return KeyPair(pair.public, None, pair.name)


def load_key_pair(path: str | Path, option: str = "") -> KeyPair:
    """The key pair in ``path``, which must be a ``.key_secret`` file that only its owner can read; a
    ConfigError naming the file otherwise.

    As ssh does with a private key, a secret key file that others may read or write is refused: the
    key may already be known to them, and a run that used it would hide that.
    """
    pair = _load(path, option)
    if pair.secret is None:
        raise ConfigError(str(path), option, f"no secret key in this file: expected the {SECRET_SUFFIX} file of a pair")
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & 0o077:
        raise ConfigError(str(path), option, f"other users may read or change this secret key file (mode {mode:04o}): "
                          f"expected mode 0600 (run: chmod 600 {shlex.quote(str(path))})")
    return pair


def authorized_keys(directory: str | Path, option: str = "") -> dict[bytes, str]:
    """The public keys of the ``*.key`` files in ``directory``, each mapped to its file's stem."""
    directory = Path(directory)
    mode = _mode(directory, option)
    if mode is None or not stat.S_ISDIR(mode):
        raise ConfigError(str(directory), option, "not a directory: expected a directory of public .key files")
    _only_its_owner_writes(directory, option)
    keys: dict[bytes, str] = {}
    for path in sorted(directory.glob(f"*{PUBLIC_SUFFIX}")):
        _only_its_owner_writes(path, option)
        pair = load_public_key(path, option)
        keys.setdefault(pair.public, pair.name)
    return keys


def _mode(path: Path, option: str) -> int | None:
    """The mode of the file ``path`` names (through links), None if there is none; a ConfigError naming ``path`` if the
    system cannot look it up (a name too long: pathlib's is_file() raised it, a traceback of pipeline-worker)."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise ConfigError(str(path), option, f"cannot look the path up ({err.strerror or err})") from None


def _only_its_owner_writes(path: Path, option: str) -> None:
    """Refuse (ConfigError) a folder of authorized keys, or a key in it, that other users may write: any of them could
    add their own key and be let in, as ssh's StrictModes refuses such an authorized_keys."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # what cannot be read is said by what reads it
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(str(path), option, f"writable by other users (mode {stat.S_IMODE(mode):04o}): any of them "
                                             f"could add a key and be let in (expected only its owner to write it: "
                                             f"chmod go-w {path})")


def generate_key_pair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) in ``directory`` (made, 0700, if missing).

    An existing key of that name is never overwritten (ConfigError). pyzmq writes the files in a
    private temporary directory; each is then hard-linked into place, which fails if the name
    exists, so the secret is never readable by others and a concurrent writer never loses a key.
    """
    check_key_name(name)
    directory = Path(directory)
    public, secret = key_paths(directory, name)
    try:
        for path in (public, secret):
            if path.exists():
                raise ConfigError(str(path), "", _EXISTS)
        make_private_dirs(directory)
    except OSError as err:  # a name too long too, which exists() raises
        raise ConfigError(str(directory), "", f"cannot make the directory ({err.strerror or err})") from err
    try:
        # The directory is there: what fails now is writing in it (/proc, a read-only mount, no room, a long path).
        scratch = Path(tempfile.mkdtemp(prefix=".keys-", dir=directory))
    except OSError as err:
        raise _unwritable(public, err) from err
    try:
        try:
            made_public, made_secret = zmq.auth.create_certificates(scratch, name)
            os.chmod(made_secret, 0o600)  # create_certificates leaves it to the umask
            # Under a umask of 002 (a user's default on Debian and Ubuntu) it was 0664, which the run and pipeline-gui
            # refuse in authorized_keys as writable by others: the documented recipes failed on their first run.
            os.chmod(made_public, 0o644)
        except OSError as err:
            raise _unwritable(public, err) from err
        _link_new(Path(made_public), public)
        try:
            _link_new(Path(made_secret), secret)
        except ConfigError:
            public.unlink()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return public, secret


def make_private_dirs(path: Path) -> None:
    """Make the directory ``path`` and those missing above it, each 0700 (``mkdir(parents=True)`` makes the ones
    above with the umask's mode, which others may read)."""
    for missing in reversed([each for each in (path, *path.parents) if not each.exists()]):
        missing.mkdir(mode=0o700, exist_ok=True)


def _unwritable(path: Path, error: OSError) -> ConfigError:
    """The error of a key file ``path`` that cannot be written, with the system's reason."""
    return ConfigError(str(path), "", f"cannot write the key file ({error.strerror or error})")


def _link_new(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except FileExistsError as err:
        raise ConfigError(str(target), "", _EXISTS) from err
    except OSError as err:
        raise _unwritable(target, err) from err


def private_dir() -> Path:
    """The user's private directory of this project: ``$XDG_CONFIG_HOME/zmq-pipeline`` (``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "zmq-pipeline"


def ensure_private_dir() -> Path:
    """The private directory, made if missing; its mode made 0700 if others could read or enter it."""
    path = private_dir()
    try:
        make_private_dirs(path)
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o700)
    except OSError as err:
        raise ConfigError(str(path), "", f"cannot make the private directory ({err.strerror or err})") from err
    return path


def own_key_pair() -> KeyPair | None:
    """The user's own key pair (the monitor's) from the private directory; None if there is none yet."""
    secret = key_paths(private_dir(), OWN_KEY_NAME)[1]
    return load_key_pair(secret) if secret.exists() else None


def ensure_own_key_pair() -> KeyPair:
    """The user's own key pair, made first in the private directory if there is none."""
    public, secret = key_paths(ensure_private_dir(), OWN_KEY_NAME)
    if not secret.exists():
        generate_key_pair(public.parent, OWN_KEY_NAME)
        log.info("made the key pair %s and %s", public, secret)
    return load_key_pair(secret)
