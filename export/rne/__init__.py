"""What this tool knows about React Native ExecuTorch: its release lines and the ExecuTorch runtimes
they embed (`runtimes`), what each hook takes from a file (`hooks`: pairing, the segmenter's modelOpts), the 0.10 hook's own program checks (`rne_schema`), and how an app turns a
photo into the model's input (`preprocess`)."""

__all__ = ["runtimes", "rne_schema", "preprocess", "hooks"]
