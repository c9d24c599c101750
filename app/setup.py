"""Setup: choose the model, the dataset and the layer; see the model card, the class balance and the shortcut the
model learned (its accuracy on clean test images and on the same images with the artifact).

The choices live under shared session keys (`checkpoint`, `dataset_spec`, `layer`) that every page reads through
`app.context`; this page's own keys start with `setup_`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.analysis import analysis_panel, in_background, started_analysis
from app.context import Context, chosen_model, current_context, init_choices
from app.resources import layer_choices, load_dataset, predictions_ready, test_accuracy
from backend.data import Normalization
from backend.defaults import DEFAULT_DATASET
from backend.errors import ClarcError
from backend.evaluation import clean_accuracy
from backend.models import IMAGENET_NORMALIZATION, MissingCardError, architecture_names, import_checkpoint
from backend.runs import AnalysisJob
from backend.storage import resolve_workspace, store_checkpoint_upload
from components.image_grid import image_grid
from components.plots import class_balance_chart


def render() -> None:
    st.title("ClArC Studio")
    st.caption("Find the shortcuts a skin-lesion classifier learned, and unlearn them.")
    state = st.session_state
    init_choices()
    try:  # the model first: the dataset field's default is the dataset it was trained on
        model, problem = chosen_model(), None
    except ClarcError as exc:
        model, problem = None, exc
    state.setdefault("dataset_spec", (model.meta.dataset if model else None) or DEFAULT_DATASET)
    left, right = st.columns(2)
    left.text_input(
        "Model checkpoint",
        key="checkpoint",
        persist_state="session",
        help="path of a .safetensors (or weights-only .pt / Lightning .ckpt) file",
    )
    left.file_uploader(
        "…or upload one", type=["safetensors", "pt", "pth", "ckpt"], key="setup_upload", on_change=_take_upload
    )
    if state.get("setup_upload_error"):
        left.error(state["setup_upload_error"])
    right.text_input(
        "Dataset",
        key="dataset_spec",
        persist_state="session",
        help="`synthderm` (the embedded benchmark, e.g. `synthderm?artifact=ruler&p=0.3`), "
        "`isic:/path/to/ISIC_2019_Training_Input` (with its ground-truth CSV), `folder:/path` (one sub-folder per "
        "class), `boneage:/path`, `celeba:/path?attribute=Blond_Hair` or `imagenet:/path?wnids=n01440764,…`",
    )
    if model is None:
        if isinstance(problem, MissingCardError):
            _import_form()
        else:
            st.error(str(problem))
        st.stop()
    layers = layer_choices(model)
    if state.get("layer") not in layers:
        state["layer"] = model.default_layer if model.default_layer in layers else layers[-1]
    right.selectbox(
        "Layer for concepts",
        layers,
        key="layer",
        persist_state="session",
        help="where CAVs are fitted and the correction acts; the architecture's default is preselected",
    )
    _model_card(model)
    try:
        context = current_context()
        described = context.dataset.describe()
    except ClarcError as exc:
        st.error(str(exc))
        st.stop()
    st.caption(f"Dataset: `{described['spec']}`")  # the whole spec, which the field above may cut off
    _dataset_summary(described)
    if in_background(context.dataset, "test") and not context.dataset.planting:
        figures = _accuracy_in_background(context)
    else:
        try:
            figures = test_accuracy(context.model, context.dataset)
        except ClarcError as exc:
            st.error(str(exc))
            st.stop()
    if figures is not None:
        _test_accuracy(context.dataset, figures)


def _accuracy_in_background(context: Context) -> dict | None:
    """Clean test accuracy of a large test split from an analysis job's predictions (its progress shows until then:
    at ISIC's size, predicting 2,500 test images takes minutes on a CPU)."""
    total = len(context.dataset.split("test"))
    preds = predictions_ready(context.model, context.dataset, "test")
    ready = 0 if preds is None else len(preds.sample_ids)
    if ready == total:
        return clean_accuracy(preds, context.dataset.classes)
    st.subheader("Test accuracy")
    job = AnalysisJob(
        checkpoint=context.checkpoint, dataset=context.spec, split="test", layers=(context.layer,), heatmaps=False
    )

    def count_ready() -> int:
        now = predictions_ready(context.model, context.dataset, "test")
        return 0 if now is None else len(now.sample_ids)

    analysis_panel(job, started_analysis(job), ready, total, count_ready, note="The accuracy shows when it is done.")
    return None


def _import_form() -> None:
    """A checkpoint without a card (a model trained elsewhere): say what it is, and import it."""
    state = st.session_state
    st.warning(
        "This checkpoint has weights but no model card. Tell ClArC Studio what it is: the architecture, the classes in "
        "the order of its outputs, its input size and normalisation. Plain state dicts, DataParallel (`module.`) "
        "and Lightning (`model.`) checkpoints are read without running their code."
    )
    try:
        classes = ", ".join(load_dataset(state["dataset_spec"]).classes)
    except ClarcError:
        classes = ""
    with st.form("setup_import"):
        c1, c2, c3 = st.columns([1, 2, 1])
        archs = list(architecture_names())
        c1.selectbox("Architecture", archs, index=archs.index("resnet18"), key="setup_import_arch")
        c2.text_input(
            "Classes, in output order", value=classes, key="setup_import_classes", help="e.g. benign, malignant"
        )
        c3.number_input("Input size (px)", value=224, min_value=16, max_value=1024, step=1, key="setup_import_size")
        m1, m2 = st.columns(2)
        m1.text_input("Mean", value=", ".join(f"{v:g}" for v in IMAGENET_NORMALIZATION.mean), key="setup_import_mean")
        m2.text_input("Std", value=", ".join(f"{v:g}" for v in IMAGENET_NORMALIZATION.std), key="setup_import_std")
        st.form_submit_button("Import checkpoint", type="primary", icon=":material/input:", on_click=_import)
    if state.get("setup_import_error"):
        st.error(state["setup_import_error"])


def _import() -> None:
    """Import the checkpoint with what the form says (a callback: it runs before the widgets of the next run)."""
    state = st.session_state
    source = Path(state["checkpoint"])
    try:
        normalization = Normalization(
            *(tuple(float(v) for v in state[f"setup_import_{k}"].split(",")) for k in ("mean", "std"))
        )
        model = import_checkpoint(
            source,
            arch=state["setup_import_arch"],
            classes=tuple(c.strip() for c in state["setup_import_classes"].split(",") if c.strip()),
            out=resolve_workspace() / "models" / f"{source.stem}.safetensors",
            input_size=int(state["setup_import_size"]),
            normalization=normalization,
        )
    except (ClarcError, ValueError, TypeError) as exc:
        state["setup_import_error"] = f"Not imported: {exc}"
        return
    state.pop("setup_import_error", None)
    state["checkpoint"] = str(model.path)


def _take_upload() -> None:
    state = st.session_state
    upload = state.get("setup_upload")
    if upload is None:
        state.pop("setup_upload_error", None)  # the file was removed: so is its error
        return
    try:
        state["checkpoint"] = str(store_checkpoint_upload(upload.getvalue()))
        state.pop("setup_upload_error", None)
    except ClarcError as exc:
        state["setup_upload_error"] = str(exc)


def _model_card(model) -> None:
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
    interval = figures.get("attacked_acc_interval")  # figures an analysis job stored earlier have none
    a2.metric(
        f"Attacked ({figures['artifact']} in every image)",
        f"{figures['attacked_acc']:.1%}",
        f"{gap * 100:+.1f} pts",
        help=f"95% interval over the test images: {interval[0]:.1%}–{interval[1]:.1%}" if interval else None,
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
