#!/usr/bin/env bash
# The main job on the bundled example course: set up, create the course, generate every student's
# notebook, grade the sample submissions in submissions/hw1-conv, and show where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf example-course
.venv/bin/hwkit init example-course --example
.venv/bin/hwkit generate hw1-conv --course example-course
.venv/bin/hwkit grade hw1-conv --course example-course --submissions submissions/hw1-conv
echo
cat example-course/graded/hw1-conv/grades.csv
echo
echo "Feedback pages: example-course/graded/hw1-conv/<student>/feedback.html (e.g. s002)"
echo "Summary:        example-course/graded/hw1-conv/summary.html"
