"""Benchmark helpers that drive the app (kept out of `backend/`, which never imports streamlit)."""
