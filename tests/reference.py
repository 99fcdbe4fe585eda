"""Slow, obviously literal reference implementations the fast code is proven equal to."""

from __future__ import annotations

import math


def dissimilarity_scalar(a, b, centre_weight):
    """The documented d(a, b) in plain Python floats, operation for operation."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    inter = max(iw, 0.0) * max(ih, 0.0)
    aw, ah, bw, bh = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    union = aw * ah + bw * bh - inter
    iou = inter / union if union > 0 else 0.0
    dx = (ax1 + ax2) - (bx1 + bx2)
    dy = (ay1 + ay2) - (by1 + by2)
    diag = math.sqrt(aw * aw + ah * ah) + math.sqrt(bw * bw + bh * bh)
    return (1.0 - iou) + centre_weight * (math.sqrt(dx * dx + dy * dy) / max(diag, 1e-12))


def greedy_merge_reference(boxes, scores, classes, threshold, centre_weight):
    """The paper's greedy merge, literally: per class, find the closest pair by scanning every
    pair, merge it, repeat until the closest pair is past the threshold.

    Returns a list of (class, box, score, count, members) sorted like the fast version.
    """
    out = []
    for c in sorted(set(int(k) for k in classes)):
        idx = [n for n in range(len(boxes)) if int(classes[n]) == c]
        bx = [[float(v) for v in boxes[n]] for n in idx]
        sc = [float(scores[n]) for n in idx]
        cnt = [1] * len(idx)
        members = [[n] for n in idx]
        while len(bx) > 1:
            best = None
            for i in range(len(bx)):
                for j in range(i + 1, len(bx)):
                    d = dissimilarity_scalar(bx[i], bx[j], centre_weight)
                    if best is None or d < best[0]:
                        best = (d, i, j)
            d, i, j = best
            if d > threshold:
                break
            bx[i] = [(cnt[i] * bx[i][k] + cnt[j] * bx[j][k]) / (cnt[i] + cnt[j]) for k in range(4)]
            sc[i] = sc[i] + sc[j]
            cnt[i] = cnt[i] + cnt[j]
            members[i] = sorted(members[i] + members[j])
            del bx[j], sc[j], cnt[j], members[j]
        out += [(c, bx[k], sc[k], cnt[k], members[k]) for k in range(len(bx))]
    out.sort(key=lambda r: (-r[2], r[0], r[4][0]))
    return out


def nms_reference(boxes, scores, iou_threshold):
    """Non-maximum suppression, literally: take the best remaining box, drop every remaining box
    that overlaps it by more than the threshold, repeat. Equal scores: earlier box first."""

    def iou(a, b):
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        inter = max(iw, 0.0) * max(ih, 0.0)
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining if iou(boxes[best], boxes[i]) <= iou_threshold]
    return keep
