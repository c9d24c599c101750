"""Reusable Streamlit widgets of ClArC Studio: they draw what the backend computed and compute nothing."""
