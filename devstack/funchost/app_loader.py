"""Import the script root's function_app.py and index its functions, as the Python worker does.

Runs inside worker processes only: the host process never imports user code.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import azure.functions as func

from devstack.funchost.payloads import FunctionMetadata

SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"
DEFAULT_SCRIPT_FILE = "function_app.py"


def import_function_app(script_root: Path) -> func.FunctionRegister:
    """Import the app module from the script root and return its one FunctionApp instance."""
    script_file = os.environ.get(SCRIPT_FILE_SETTING, DEFAULT_SCRIPT_FILE)
    module_name = Path(script_file).stem
    root = str(script_root.resolve())
    # The real worker runs with the script root as working directory and first on sys.path.
    os.chdir(root)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(module_name)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise RuntimeError(f"{script_file} must define exactly one FunctionApp at module level, found {len(apps)}")
    return apps[0]


def index_functions(app: func.FunctionRegister) -> dict[str, tuple[FunctionMetadata, Any]]:
    """Function name -> (metadata for the host, the decorated Function object)."""
    indexed: dict[str, tuple[FunctionMetadata, Any]] = {}
    for function in app.get_functions():
        name = function.get_function_name() or function.get_user_function().__name__
        # The JSON round trip turns the decorator enums into the strings function.json would hold.
        bindings = json.loads(function.get_function_json())["bindings"]
        indexed[name] = (FunctionMetadata(name=name, bindings=bindings), function)
    return indexed
