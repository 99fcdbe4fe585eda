"""Slow, obviously literal reference implementations the fast code is proven equal to."""

from __future__ import annotations

import math

import numpy as np


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


def nms_vote_reference(boxes, scores, iou_threshold):
    """NMS whose suppressed boxes vote, literally: the clusters of :func:`nms_reference` (the
    kept box and the boxes it drops); each gives the score-weighted mean of its members' boxes
    (the plain mean if their scores sum to 0), the sum of their scores and their number."""
    remaining = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    out = []
    while remaining:
        best = remaining.pop(0)
        members = [best] + [i for i in remaining if _iou_scalar(boxes[best], boxes[i]) > iou_threshold]
        remaining = [i for i in remaining if i not in members]
        total = sum(scores[i] for i in members)
        weights = [scores[i] / total if total > 0 else 1 / len(members) for i in members]
        box = [sum(w * boxes[i][k] for w, i in zip(weights, members, strict=True)) for k in range(4)]
        out.append((box, total, len(members)))
    return out


def _iou_scalar(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def voc_ap_reference(detections, truths, num_classes, iou_threshold=0.5):
    """The VOC devkit's AP, literally: per class, every detection of every image in order of
    decreasing score (ties: image, then position); a hit if the ground-truth box it overlaps
    most reaches the threshold and was not taken; AP = area under the precision envelope.

    detections: per image a list of (box, score, label); truths: per image a list of (box, label).
    Returns a list with None for classes without ground truth.
    """
    out = []
    for c in range(num_classes):
        n_truth = sum(1 for image in truths for _, label in image if label == c)
        if n_truth == 0:
            out.append(None)
            continue
        dets = [
            (-score, i, k, box) for i, image in enumerate(detections) for k, (box, score, label) in enumerate(image) if label == c
        ]
        dets.sort(key=lambda d: (d[0], d[1], d[2]))
        taken = {i: [False] * len(truths[i]) for i in range(len(truths))}
        tp = []
        for _, i, _, box in dets:
            best, best_j = -1.0, None
            for j, (gt, label) in enumerate(truths[i]):
                if label != c:
                    continue
                o = _iou_scalar(box, gt)
                if o > best:
                    best, best_j = o, j
            if best_j is not None and best >= iou_threshold and not taken[i][best_j]:
                taken[i][best_j] = True
                tp.append(1)
            else:
                tp.append(0)
        recall, precision, hits = [], [], 0
        for n, t in enumerate(tp, 1):
            hits += t
            recall.append(hits / n_truth)
            precision.append(hits / n)
        mrec = [0.0] + recall + [1.0]
        mpre = [0.0] + precision + [0.0]
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        out.append(sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i]))
    return out


def window_targets_reference(boxes, labels, origins, window, num_classes, positive=0.5, background=0.2):
    """Training targets of each window, one window and one object at a time.

    Returns per window (cls label | "bg" | None, {class: encoded box}).
    """
    out = []
    S = float(window)
    for x0, y0 in origins:
        wbox = (float(x0), float(y0), x0 + S, y0 + S)
        fracs, ious = [], []
        for b in boxes:
            iw = max(0.0, min(wbox[2], b[2]) - max(wbox[0], b[0]))
            ih = max(0.0, min(wbox[3], b[3]) - max(wbox[1], b[1]))
            area = max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
            fracs.append(iw * ih / area)
            ious.append(iw * ih / (S * S + area - iw * ih))
        best = None
        for k in range(len(boxes)):
            if fracs[k] >= positive and (best is None or ious[k] > ious[best]):
                best = k
        if best is not None:
            label = int(labels[best])
        elif all(f < background for f in fracs):
            label = "bg"
        else:
            label = None
        per_class = {}
        for c in range(num_classes):
            pick = None
            for k in range(len(boxes)):
                if labels[k] == c and fracs[k] >= positive and (pick is None or ious[k] > ious[pick]):
                    pick = k
            if pick is not None:
                b = boxes[pick]
                per_class[c] = ((b[0] - x0) / S, (b[1] - y0) / S, (b[2] - x0) / S, (b[3] - y0) / S)
        out.append((label, per_class))
    return out


def merge_mismatch(fast, ref) -> str | None:
    """The first difference between a fast :class:`Merged` and the reference's list (bit for
    bit: classes, counts, members, boxes, scores), or None when they are the same."""
    if len(fast.boxes) != len(ref):
        return f"{len(fast.boxes)} merged boxes, the reference has {len(ref)}"
    for k, (cls, box, score, count, members) in enumerate(ref):
        got = (int(fast.classes[k]), fast.boxes[k].tolist(), float(fast.scores[k]), int(fast.counts[k]), fast.members(k).tolist())
        if got != (cls, box, score, count, members):
            return f"row {k}: fast {got}, reference {(cls, box, score, count, members)}"
    return None


def triangle_weights_reference(n_in, n_out):
    """[n_out][n_in] weights of the resampling filter, one output pixel at a time: a triangle of
    half-width max(n_in / n_out, 1) input pixels around the output pixel's centre (half-pixel
    convention), renormalised over the pixels inside the image."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    rows = []
    for o in range(n_out):
        centre = (o + 0.5) * scale
        row = [max(0.0, 1.0 - abs((i + 0.5 - centre) / support)) for i in range(n_in)]
        total = sum(row)
        rows.append([v / total for v in row])
    return rows


def batch_reference(image, size, mean, std, flip):
    """A pyramid scale's batch the slow way: resize each channel of ``image`` [H, W, 3] with the
    weight matrices (float64), then normalise each pixel, then mirror."""
    h, w = size
    wy, wx = triangle_weights_reference(image.shape[0], h), triangle_weights_reference(image.shape[1], w)
    out = np.zeros((3, h, w))
    for c in range(3):
        channel = image[:, :, c].astype(np.float64)
        resized = np.array(wy) @ channel @ np.array(wx).T
        out[c] = (resized - mean[c]) / std[c]
    return np.stack([out, out[:, :, ::-1]]) if flip else out[None]
