"""A fragment whose timed rerun fails, as Fleet's followers do when the database goes away (tests/e2e/test_shell)."""

import streamlit as st

from pica_core.ui.layout import safe_fragment

runs = st.session_state.setdefault("runs", [0])


@safe_fragment(run_every=0.5)
def ticking() -> None:
    runs[0] += 1
    if runs[0] >= 3:  # the page's run and one timed rerun draw; the next fails
        raise RuntimeError("the database went away")
    st.write(f"tick {runs[0]}")


ticking()
