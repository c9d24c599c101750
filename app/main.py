"""ClArC Studio dashboard: `streamlit run app/main.py`. Routes the pages; every number comes from `backend/`."""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="ClArC Studio", page_icon=":material/biotech:", layout="wide")

_HERE = Path(__file__).resolve().parent
pages = [
    st.Page(str(_HERE / "setup.py"), title="Setup", icon=":material/tune:", default=True),
    st.Page(str(_HERE / "explore.py"), title="Explore", icon=":material/grid_view:", url_path="explore"),
    st.Page(str(_HERE / "reveal.py"), title="Reveal", icon=":material/travel_explore:", url_path="reveal"),
    st.Page(str(_HERE / "concepts.py"), title="Concepts", icon=":material/explore:", url_path="concepts"),
    st.Page(str(_HERE / "correct.py"), title="Correct", icon=":material/healing:", url_path="correct"),
    st.Page(str(_HERE / "results.py"), title="Results", icon=":material/compare:", url_path="results"),
    st.Page(str(_HERE / "runs.py"), title="Runs", icon=":material/table_chart:", url_path="runs"),
]
st.navigation(pages).run()
