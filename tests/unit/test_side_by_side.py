"""The side-by-side benchmark's bookkeeping (issue 20): which peer figure is compared with which of ours."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def sbs():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("side_by_side", BENCH / "side_by_side.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


def test_peer_end_to_end_is_the_better_of_its_cli_and_streaming_paths(sbs):
    raw = {"pipeline_gen": {"fps_mean": 27.0, "first_chunk_latent_ms": {"mean": 300.0}},
           "pipeline_e2e": {"fps_mean": 16.0}, "stream_e2e": {"fps_mean": 17.0,
           "first_chunk_latent_ms": {"mean": 250.0}, "first_chunk_pixels_ms": {"mean": 600.0}}}
    fig = sbs.peer_figures(raw)
    assert fig == {"generator_fps": 27.0, "end_to_end_fps": 17.0, "first_chunk_s": 0.25, "first_pixels_s": 0.6}


def test_peer_figures_without_the_streaming_run_fall_back_or_stay_unknown(sbs):
    raw = {"pipeline_gen": {"fps_mean": 27.0, "first_chunk_latent_ms": {"mean": 300.0}}, "pipeline_e2e": {"fps_mean": 16.0}}
    fig = sbs.peer_figures(raw)
    assert fig["end_to_end_fps"] == 16.0 and fig["first_chunk_s"] == 0.3 and fig["first_pixels_s"] is None


def test_ratios_are_speed_ups_for_rates_and_latencies_alike(sbs):
    ours = {"generator_fps": 40.0, "end_to_end_fps": 20.0, "first_chunk_s": 0.1, "first_pixels_s": None}
    peer = {"generator_fps": 20.0, "end_to_end_fps": 40.0, "first_chunk_s": 0.2, "first_pixels_s": 0.5}
    assert sbs.ratios(ours, peer) == {"generator_fps": 2.0, "end_to_end_fps": 0.5, "first_chunk_s": 2.0,
                                      "first_pixels_s": None}
