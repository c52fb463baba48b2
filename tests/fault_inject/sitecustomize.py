"""Storage faults injected into a real CLI run (tests and benchmarks/faults.py put this folder on PYTHONPATH).

EVAL_AGENT_FAULT=<errno name>:<n> makes the n-th and every later write of a session file fail with
that OS error (ENOSPC for a full disk, EROFS for a read-only folder), from inside the process, the
way the kernel would report it. Nothing else is patched; without the variable this file does nothing.
"""

import os

_spec = os.environ.get("EVAL_AGENT_FAULT", "")
if _spec:
    import errno

    from mlflow_eval_agent.store import base as _base

    _name, _, _after = _spec.partition(":")
    _code = getattr(errno, _name)
    _limit = int(_after or "1")
    _real = _base.atomic_write_bytes
    _count = [0]

    def _failing_write(path, data):
        if "/sessions/" in str(path):
            _count[0] += 1
            if _count[0] >= _limit:
                raise OSError(_code, os.strerror(_code), str(path))
        return _real(path, data)

    _base.atomic_write_bytes = _failing_write
