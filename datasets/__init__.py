"""Datasets: the procedurally generated shapes data and COCO-style reading and writing."""
