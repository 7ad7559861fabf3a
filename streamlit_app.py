"""Pica integration-ops dashboard: one process serving the pages, the AuthKit token route and,
in sandbox mode, the Pica emulator under /sandbox.

Run: `make run` (or `streamlit run streamlit_app.py`).
"""

import streamlit as st

from pica_core import web

# Streamlit serves this ASGI app; its routes are built once per process.
app = st.App(__file__, routes=web.routes(exit_on_config_error=__name__ != "__main__"))

if __name__ == "__main__":  # Streamlit runs this file as __main__ for every page view
    from pica_core.ui.shell import run

    run()
