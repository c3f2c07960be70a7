"""The OpenVINO CPU backend: conversion (convert.py), the on-disk cache (cache.py), the pipeline adapter (backend.py)."""
