"""A backtest process keeps freed memory for reuse where glibc's malloc can be told to (backtest.memory)."""

import platform
import subprocess
import sys


def test_glibc_is_told_to_keep_freed_memory_once_per_process():
    script = (
        "from lstm_pipeline.backtest.memory import keep_freed_memory\n"
        "first = keep_freed_memory(); second = keep_freed_memory()\n"
        "print(first, second)\n"
    )
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    first, second = answer.stdout.split()
    assert first == second  # the first answer, not a second call to mallopt
    assert first == str(platform.libc_ver()[0] == "glibc")  # applied on glibc, declined elsewhere without an error
