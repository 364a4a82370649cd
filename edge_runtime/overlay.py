"""The decision drawn on a frame (for /latest.jpg and jetson/detect_stream.py)."""
from __future__ import annotations

import numpy as np

OK_COLOR, DEFECT_COLOR = (60, 180, 60), (40, 40, 230)  # BGR


def annotate(frame_bgr: np.ndarray, decision) -> np.ndarray:
    """A copy of `frame_bgr` with a coloured border and "label confidence exit latency" on top."""
    import cv2

    img = frame_bgr.copy() if frame_bgr.ndim == 3 else cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    color = DEFECT_COLOR if decision.is_defect else OK_COLOR
    h, w = img.shape[:2]
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), color, max(2, min(h, w) // 60))
    text = f"{decision.label} {decision.confidence:.2f} exit{decision.exit_index} {decision.latency_ms:.1f}ms"
    if decision.reused:
        text += " (reused)"
    scale = max(0.35, min(h, w) / 640)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (min(w, tw + 8), th + base + 8), color, -1)
    cv2.putText(img, text, (4, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img
