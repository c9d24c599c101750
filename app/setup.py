"""Setup: choose the model, the dataset and the layer; see the model card, the class balance and the shortcut the
model learned (its accuracy on clean test images and on the same images with the artifact).

The choices live under shared session keys (`checkpoint`, `dataset_spec`, `layer`) that every page reads through
`app.context`; this page's own keys start with `setup_`."""

from __future__ import annotations

import streamlit as st

from app.context import current_context, init_choices
from app.resources import layer_choices, test_accuracy
from backend.errors import ClarcError
from backend.storage import store_checkpoint_upload
from components.image_grid import image_grid
from components.plots import class_balance_chart


def render() -> None:
    st.title("ClArC Studio")
    st.caption("Find the shortcuts a skin-lesion classifier learned, and unlearn them.")
    init_choices()
    left, right = st.columns(2)
    left.text_input(
        "Model checkpoint",
        key="checkpoint",
        persist_state="session",
        help="path of a .safetensors (or weights-only .pt) file",
    )
    left.file_uploader("…or upload one", type=["safetensors", "pt", "pth"], key="setup_upload", on_change=_take_upload)
    if st.session_state.get("setup_upload_error"):
        left.error(st.session_state["setup_upload_error"])
    context = current_context()
    right.text_input(
        "Dataset",
        key="dataset_spec",
        persist_state="session",
        help="`synthderm` (the embedded benchmark, e.g. `synthderm?artifact=ruler&p=0.3`), "
        "`isic:/path/to/ISIC_2019_Training_Input` (with its ground-truth CSV) or `folder:/path` (one sub-folder per "
        "class)",
    )
    model, dataset = context.model, context.dataset
    right.selectbox(
        "Layer for concepts",
        layer_choices(model),
        key="layer",
        persist_state="session",
        help="where CAVs are fitted and the correction acts; the architecture's default is preselected",
    )
    try:
        described = dataset.describe()
        figures = test_accuracy(model, dataset)
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    _model_card(context)
    _dataset_summary(described)
    _test_accuracy(dataset, figures)


def _take_upload() -> None:
    state = st.session_state
    upload = state.get("setup_upload")
    if upload is None:
        return
    try:
        state["checkpoint"] = str(store_checkpoint_upload(upload.getvalue()))
        state.pop("setup_upload_error", None)
    except ClarcError as exc:
        state["setup_upload_error"] = str(exc)


def _model_card(context) -> None:
    st.subheader("Model")
    model = context.model
    meta = model.meta
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Architecture", meta.arch)
    c2.metric("Classes", len(meta.classes))
    c3.metric("Input size", f"{meta.input_size} px")
    c4.metric("Parameters", f"{sum(p.numel() for p in model.module.parameters()) / 1e6:.2f} M")
    st.write("Classes: " + ", ".join(f"`{c}`" for c in meta.classes) + f" · default CAV layer `{model.default_layer}`")
    with st.expander("Model card"):
        st.json(meta.to_dict() | {"sha256": model.sha256})


def _dataset_summary(described: dict) -> None:
    st.subheader("Dataset")
    planting = described["planting"]
    if planting:
        st.write(
            f"`{planting['artifact']}` planted into {planting['p']:.0%} of the "
            f"{', '.join(planting['classes'])} training and validation images."
        )
    else:
        st.write("No artifact planted: annotate the samples that show one on **Explore**.")
    st.plotly_chart(class_balance_chart(described["counts"]), key="setup_class_balance")


def _test_accuracy(dataset, figures: dict) -> None:
    st.subheader("Test accuracy")
    a1, a2, a3 = st.columns(3)
    a1.metric("Clean", f"{figures['clean_acc']:.1%}")
    if "attacked_acc" not in figures:
        a2.metric("Test samples", figures["n"])
        return
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


if __name__ == "__main__":
    render()
