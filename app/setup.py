"""Setup: choose the model and the dataset; see the model card, the class balance and the shortcut it learned."""

from __future__ import annotations

import os

import streamlit as st

from app.resources import load_dataset, load_model, test_accuracy
from backend.defaults import DEFAULT_CHECKPOINT, DEFAULT_DATASET
from backend.errors import ClarcError
from components.image_grid import image_grid
from components.plots import class_balance_chart

st.title("ClArC Studio")
st.caption("Find the shortcuts a skin-lesion classifier learned, and unlearn them.")

state = st.session_state
state.setdefault("checkpoint", str(DEFAULT_CHECKPOINT))

left, right = st.columns(2)
checkpoint = left.text_input("Model checkpoint", key="checkpoint", help="a .safetensors (or weights-only .pt) file")
try:
    model = load_model(checkpoint, os.path.getmtime(checkpoint) if os.path.exists(checkpoint) else 0.0)
except ClarcError as exc:
    st.error(str(exc))
    st.stop()

state.setdefault("dataset_spec", model.meta.dataset or DEFAULT_DATASET)
spec = right.text_input(
    "Dataset",
    key="dataset_spec",
    help="`synthderm` (embedded benchmark, e.g. `synthderm?artifact=ruler&p=0.3`), `isic:/folder` or `folder:/folder`",
)
try:
    dataset = load_dataset(spec)
    if tuple(dataset.classes) != tuple(model.meta.classes):
        st.error(f"The model predicts {list(model.meta.classes)} but the dataset has classes {list(dataset.classes)}.")
        st.stop()
    described = dataset.describe()
    figures = test_accuracy(model.sha256, spec, model)
except ClarcError as exc:
    st.error(str(exc))
    st.stop()

st.subheader("Model")
meta = model.meta
c1, c2, c3, c4 = st.columns(4)
c1.metric("Architecture", meta.arch)
c2.metric("Classes", len(meta.classes))
c3.metric("Input size", f"{meta.input_size} px")
c4.metric("Parameters", f"{sum(p.numel() for p in model.module.parameters()) / 1e6:.2f} M")
st.write("Classes: " + ", ".join(f"`{c}`" for c in meta.classes) + f" · default CAV layer `{model.default_layer}`")
with st.expander("Model card"):
    st.json(meta.to_dict() | {"sha256": model.sha256})

st.subheader("Dataset")
planting = described["planting"]
if planting:
    st.write(
        f"`{planting['artifact']}` planted into {planting['p']:.0%} of the "
        f"{', '.join(planting['classes'])} training and validation images."
    )
else:
    st.write("No artifact planted.")
st.plotly_chart(class_balance_chart(described["counts"]), key="class_balance")

st.subheader("Test accuracy")
a1, a2, a3 = st.columns(3)
a1.metric("Clean", f"{figures['clean_acc']:.1%}")
if "attacked_acc" in figures:
    gap = figures["attacked_acc"] - figures["clean_acc"]
    a2.metric(
        f"Attacked ({figures['artifact']} in every image)", f"{figures['attacked_acc']:.1%}", f"{gap * 100:+.1f} pts"
    )
    a3.metric("Test samples", figures["n"])
    clean, attacked = dataset.split("test", "clean"), dataset.split("test", "attacked")
    shown = range(min(8, len(clean)))
    st.caption("The same test images, clean (top) and with the artifact (bottom).")
    image_grid(
        [clean.image(i) for i in shown] + [attacked.image(i) for i in shown],
        [f"{clean.sample_ids[i]} · {dataset.classes[clean.labels[i]]}" for i in shown] * 2,
        columns=len(shown),
    )
else:
    a2.metric("Test samples", figures["n"])
