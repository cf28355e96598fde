"""Development Azure Functions host: runs function_app.py (Python v2 model) without Core Tools.

Started as ``python -m devstack.funchost [--script-root .] [--port 7071] [--host 127.0.0.1]``. See docs/devhost.md.
"""
