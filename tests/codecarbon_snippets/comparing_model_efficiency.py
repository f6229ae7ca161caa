# docs/tutorials/comparing-model-efficiency.md, "Setup" (the output directory) and
# "Step 3: Train and Track Each Configuration".
# Changed: each RandomForest fit is a CPU loop (30 ms per 100 trees) and its scores are
# constants; the dataset step is left out.
import time
from pathlib import Path

from codecarbon import EmissionsTracker

# Create output directory for emissions logs
Path("./emissions").mkdir(exist_ok=True)

models_to_test = [
    {"name": "Small RF", "n_estimators": 50, "max_depth": 10},
    {"name": "Medium RF", "n_estimators": 100, "max_depth": 15},
    {"name": "Large RF", "n_estimators": 200, "max_depth": 20},
]

results = []

for model_config in models_to_test:
    print(f"\nTraining {model_config['name']}...")

    # Start emissions tracking
    tracker = EmissionsTracker(
        project_name=f"ml_{model_config['name'].replace(' ', '_').lower()}",
        output_dir="./emissions",
    )
    tracker.start()

    try:
        # Record training time
        start_time = time.time()

        # Train the model
        end = time.perf_counter() + 0.03 * model_config["n_estimators"] / 100
        while time.perf_counter() < end:
            pass
        train_score = 0.99
        test_score = 0.9
        training_time = time.time() - start_time

    finally:
        # Stop tracking (guaranteed to run even if error occurs)
        emissions = tracker.stop()
        if emissions is None:
            emissions = 0.0

        # Store results
        results.append(
            {
                "Model": model_config["name"],
                "Train Accuracy": train_score,
                "Test Accuracy": test_score,
                "Training Time (s)": training_time,
                "CO2 Emissions (kg)": emissions,
                "CO2 per Accuracy Point": emissions / test_score
                if test_score > 0
                else float("inf"),
            }
        )

        print(f"✓ {model_config['name']}: {test_score:.3f} accuracy, {emissions:.6f} kg CO2")
