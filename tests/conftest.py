"""Shared by every test directory. This directory is on sys.path (pytest imports this file
rootdir-relative), so test modules import by name: `cupy_standin` (the CuPy stand-in that runs
alexnet_raw's GPU code paths on the CPU runtime), `gpu_paths` (a real GPU or the stand-in, and
`strict_standin`) and `crafted_files` (hostile files for the input tests).
"""
