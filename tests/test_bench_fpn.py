"""frcnn-bench's fpn rows (frcnn_ops.bench.cases.fpn) at a small size: each row's setup, both
sides and its check, as frcnn-bench runs them before timing (at 800x1216 they take seconds a
call; here 128x192, the Mask R-CNN's masks of its top 5 detections of 100 proposals). The
group runs only when named. Never asserts times."""
import pytest

from frcnn_ops.bench import cases as C
from frcnn_ops.bench.cases.fpn import fpn_cases

SMALL = fpn_cases(hw=(128, 192), mask_dets=5, mask_rois=100)


def test_fpn_group_runs_only_when_named():
    env = C.Env()
    assert "fpn" in C.GROUPS and "fpn" in C.OPT_IN and "fpn" not in C.DEFAULT_GROUPS
    assert not any(c.group == "fpn" for c in C.comparisons(env))   # the default
    from frcnn_ops.bench import cli
    assert cli.parse_args([]).cases == list(C.DEFAULT_GROUPS)     # the command line's
    full = [c for c in C.all_cases() if c.group == "fpn"]
    assert [c.op for c in full] == [c.op for c in SMALL]
    assert all(c.slow is True and "800x1216" in c.shape for c in full)
    if not env.missing(full[0].needs):
        assert [c.id for c in C.comparisons(env, ["fpn"])] == [c.id for c in full]
        assert [c.group for c in C.comparisons(env, ["model", "fpn"])][-4:] == ["fpn"] * 4


@pytest.mark.parametrize("case", SMALL, ids=[c.op for c in SMALL])
def test_fpn_row_agrees_at_small_size(case):
    env = C.Env()
    why = env.missing(case.needs)
    if why:
        pytest.skip(why)
    pair = case.setup(env)
    agreement = pair.check(C.to_numpy(pair.ours()), C.to_numpy(pair.ref()))
    training = case.op == "FPN training iteration"
    assert agreement.status == ("timing-only" if training else "ok"), agreement.detail
    if not training:   # ours against GluonCV's unmasked pooling, the shipped graph's alongside
        assert "100.0% of" in agreement.detail and "its shipped graph" in agreement.detail
