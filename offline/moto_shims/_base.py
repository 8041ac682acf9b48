"""The version pin and the install/uninstall machinery every moto patch shares."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from unittest import mock

import moto

PINNED_MOTO_VERSION = "5.2.5"


class MotoVersionMismatch(RuntimeError):
    """The installed moto is not the version these patches were written and tested against."""


def require_pinned_moto() -> None:
    """Refuse to patch any moto but the pinned one: the patches reach into moto's private internals."""
    if moto.__version__ != PINNED_MOTO_VERSION:
        raise MotoVersionMismatch(
            f"offline.moto_shims patches moto internals verified on moto {PINNED_MOTO_VERSION}, "
            f"but moto {moto.__version__} is installed; install moto[all,server]=={PINNED_MOTO_VERSION} "
            "or re-verify every patch in offline/moto_shims against the new version"
        )


class MotoPatch:
    """One reversible patch of moto: ``install()``/``uninstall()``, or use it as a context manager."""

    def __init__(self) -> None:
        self._patchers: list[Any] = []

    @property
    def installed(self) -> bool:
        return bool(self._patchers)

    def _patchers_to_start(self) -> list[Any]:
        raise NotImplementedError

    def install(self) -> Self:
        require_pinned_moto()
        if self.installed:
            raise RuntimeError(f"{type(self).__name__} is already installed")
        patchers = self._patchers_to_start()
        started: list[Any] = []
        try:
            for patcher in patchers:
                patcher.start()
                started.append(patcher)
        except BaseException:
            for patcher in reversed(started):
                patcher.stop()
            raise
        self._patchers = started
        return self

    def uninstall(self) -> None:
        for patcher in reversed(self._patchers):
            patcher.stop()
        self._patchers = []

    def __enter__(self) -> Self:
        return self.install()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()


def patch_attribute(target: Any, attribute: str, new: Any, *, create: bool = False) -> Any:
    """A patcher that, unless ``create``, fails loudly if moto no longer has the attribute we replace."""
    return mock.patch.object(target, attribute, new, create=create)


class PatchSet(MotoPatch):
    """Several patches installed together and uninstalled in reverse order."""

    def __init__(self, *patches: MotoPatch) -> None:
        super().__init__()
        self.patches = patches
        self._installed: list[MotoPatch] = []

    @property
    def installed(self) -> bool:
        return bool(self._installed)

    def install(self) -> Self:
        require_pinned_moto()
        if self.installed:
            raise RuntimeError("PatchSet is already installed")
        try:
            for patch in self.patches:
                patch.install()
                self._installed.append(patch)
        except BaseException:
            self.uninstall()
            raise
        return self

    def uninstall(self) -> None:
        while self._installed:
            self._installed.pop().uninstall()
