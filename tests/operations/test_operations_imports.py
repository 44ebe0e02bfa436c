"""The operations' domain code imports no Dagster; loading the definitions imports neither openpyxl nor cryptography."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _loaded(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_operations_modules_import_no_dagster():
    modules = "backups, restore, exports, retention, crypto, store_layout"
    out = _loaded(
        f"import sys; from lstm_pipeline.operations import {modules}; "
        "print(sorted(m for m in ('dagster', 'openpyxl', 'cryptography') if m in sys.modules))"
    )
    assert out == "[]"


def test_loading_the_definitions_imports_no_excel_or_cipher_library():
    out = _loaded(
        "import sys, warnings; warnings.simplefilter('ignore'); import lstm_pipeline.definitions; "
        "print(sorted(m for m in ('openpyxl', 'cryptography.hazmat.primitives.ciphers.aead') if m in sys.modules))"
    )
    assert out == "[]"
