"""The --plot figure: speedup bars per comparison (left) and the scaling sweeps (right)."""


def _label(row):
    return "%s, %s\nvs %s" % (row["op"], row["shape"], row["reference"])


def plot(path, rows, sweeps, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.get("speedup")]
    fig = plt.figure(figsize=(15, max(6.0, 0.42 * len(timed) + 1.5)))
    grid = fig.add_gridspec(2, 2, width_ratios=(1.3, 1.0), hspace=0.35, wspace=0.2)

    ax = fig.add_subplot(grid[:, 0])
    if timed:
        y = list(range(len(timed)))[::-1]
        speed = [r["speedup"] for r in timed]
        colors = ["tab:gray" if r["agreement"] == "timing-only" else "tab:blue" for r in timed]
        ax.barh(y, speed, color=colors)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([_label(r) for r in timed], fontsize=7)
        for yi, s in zip(y, speed):
            ax.text(s, yi, " %.3gx" % s, va="center", fontsize=7)
        ax.set_xlim(min(0.5, min(speed) / 1.5), max(speed) * 3)
    ax.set_xlabel("speedup (reference time / ours, median of interleaved pairs; log)")
    ax.set_title("frcnn_ops against each reference (gray: timing only)", fontsize=10)

    for i, (sweep, xlabel, ours_name) in enumerate((
            ("rois", "rois (roi_align forward, C=1024, 38x50, 14x14)", "frcnn_roi_align"),
            ("anchors", "anchors (proposal, 6000->300)", "frcnn_proposal"))):
        ax = fig.add_subplot(grid[i, 1])
        pts = sorted((p for p in sweeps if p["sweep"] == sweep), key=lambda p: p["x"])
        if not pts:
            ax.text(0.5, 0.5, "sweep not run", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        ax.plot([p["x"] for p in pts], [p["ours_ms"] for p in pts], "o-", label=ours_name)
        ref = [p for p in pts if p["ref_ms"] is not None]
        if ref:
            ax.plot([p["x"] for p in ref], [p["ref_ms"] for p in ref], "s--",
                    label=ref[0]["reference"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_ylabel("ms (median)", fontsize=9)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
