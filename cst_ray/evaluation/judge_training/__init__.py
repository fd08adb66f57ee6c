"""Training the judges that learn from labels (`cst-ray train-judge`); the judges themselves only load and label."""
