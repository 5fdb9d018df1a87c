"""Evaluators: COCO detection metrics (equal to pycocotools), VOC AP50, confusion reports."""
