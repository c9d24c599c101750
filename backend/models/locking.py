"""One lock per model module. Hooks, canonizers and train/eval switches change a module in place, and the dashboard
shares one loaded model between its sessions (threads); whoever changes a module holds its lock while the change
lasts, so another session's forward pass never runs through someone else's hooks or rules."""

from __future__ import annotations

import threading
import weakref

import torch.nn as nn

__all__ = ["module_lock"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def module_lock(module: nn.Module) -> threading.RLock:
    """The re-entrant lock of `module` (created on first use; nested use in one thread is fine)."""
    with _GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock
