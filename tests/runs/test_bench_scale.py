"""`bench scale` on a tiny folder: the ISIC-layout folder opens as a user's ISIC download would, and one run yields
every figure the scale issue asks for, measured (a page rendered beside a running analysis job, a grid page with
heatmaps, the stages, the two ratios)."""

import csv
import json

from backend.bench.isic_folder import write_isic_folder
from backend.bench.scale import ScaleBench, bench_scale
from backend.data import open_dataset


def test_the_folder_opens_as_an_isic_2019_download_with_its_artifact_labels(tmp_path):
    config = write_isic_folder(tmp_path, 60)
    assert config["written"] and not write_isic_folder(tmp_path, 60)["written"]  # written once per configuration
    dataset = open_dataset(f"isic:{tmp_path}?size=64", tmp_path / "workspace")
    assert "melanoma" in dataset.classes and "nevus" in dataset.classes and "unknown" not in dataset.classes
    sizes = {len(dataset.split(s)) for s in ("train", "val", "test")}
    assert sum(sizes) <= 60 and len(dataset.split("train")) > 30
    with (tmp_path / "artifact_labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and {r["label"] for r in rows} <= {"0", "1"}
    image = dataset.split("train").image(0)
    assert image.shape == (64, 64, 3) and image.std() > 5  # a decoded lesion, not a blank


def test_bench_scale_measures_every_stage_and_the_pages_beside_a_running_job(tmp_path):
    options = ScaleBench(images=48, arch="vgg_compact", size=64, subset=16, root=str(tmp_path / "scale"))
    result = json.loads(json.dumps(bench_scale(options).to_json()))
    stages = {"write_folder", "decode_cold", "decode_warm", "single_pass", "heatmaps", "outlier_scores", "correction"}
    stages |= {"embedding_pca", "embedding_tsne"}
    assert set(result["seconds"]) == stages == set(result["per_image_ms"])
    assert set(result["extrapolated_s"]) == stages - {"embedding_tsne"}  # t-SNE subsamples: not linear in images
    assert all(v >= 0 for v in result["seconds"].values()) and result["seconds"]["single_pass"] > 0
    assert 0 < result["first_render_s"] < 60 and 0 < result["grid_page_cached_s"] <= result["grid_page_s"] * 2
    assert 0 < result["grid_page_beside_job_s"] < 60
    assert result["ratios"]["separate_vs_single_pass"] > 1.0  # four entries, one forward pass
    assert result["ratios"]["decode_cold_vs_warm"] > 1.0
    assert result["peak_rss_mb"] > 100 and result["train_images"] == len(
        open_dataset(f"isic:{tmp_path / 'scale'}?size=64", tmp_path / "ws").split("train")
    )
