"""The least page `scripts/loadtest.py` can drive, for the floor of what Streamlit and Chromium
cost on this machine: the harness's model checkboxes, an uploader, and per chosen model one row of
three pictures (input, a grey "mask", an "overlay"). No TensorFlow, no network; the results are
ready after SEGDEMO_FLOOR_WAIT_S seconds (default 0), to show what a page costs while it waits.

    python scripts/loadtest.py concurrent --sessions 16 --app scripts/floor_app.py --json -
"""
import os
import time

import streamlit as st
from PIL import Image

MODELS = ("unet_mobilenetv2", "deeplabv3plus_mobilenetv2")  # the harness's default choice

with st.sidebar:
    for model in MODELS:
        st.checkbox(model, key=f"model_{model}", value=model == MODELS[0])
files = st.file_uploader("Photos", accept_multiple_files=True)
if files:
    time.sleep(float(os.environ.get("SEGDEMO_FLOOR_WAIT_S", "0")))
for file in files or []:
    photo = Image.open(file).convert("RGB")
    photo.thumbnail((1024, 1024))
    for model in MODELS:
        if st.session_state.get(f"model_{model}"):
            columns = st.columns(3)
            columns[0].image(photo, caption="Input")
            columns[1].image(photo.convert("L"), caption="Mask")
            columns[2].image(photo.rotate(180), caption="Overlay")
