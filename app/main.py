"""ClArC Studio dashboard: `streamlit run app/main.py`. Routes the pages; every number comes from `backend/`."""

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts only app/ on the path
    sys.path.insert(0, str(ROOT))

st.set_page_config(page_title="ClArC Studio", page_icon=":material/biotech:", layout="wide")

pages = [
    st.Page(str(Path(__file__).parent / "setup.py"), title="Setup", icon=":material/tune:", default=True),
]
st.navigation(pages).run()
