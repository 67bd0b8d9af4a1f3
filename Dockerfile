# The Airflow image for meterline: Airflow 3 with this project installed.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/meterline/
RUN pip install --no-cache-dir -r /opt/meterline/requirements.lock
COPY --chown=airflow:root . /opt/meterline/
RUN pip install --no-cache-dir --no-deps -e /opt/meterline
