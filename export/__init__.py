"""Export torchvision segmentation models to verified ExecuTorch .pte files for React Native ExecuTorch."""
