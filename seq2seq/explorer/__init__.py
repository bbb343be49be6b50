"""The attention explorer: a local web app that translates a typed sentence with one or more
checkpoints side by side and shows where each output word looked (``seq2seq-explore``).

:mod:`.predict` computes what is shown (no web code); :mod:`.figures` draws it as interactive
Plotly figures; :mod:`.app` lays it out with Gradio and serves it on 127.0.0.1.
"""
