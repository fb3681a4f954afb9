from fastapi import APIRouter

router = APIRouter(prefix="/api/backup", tags=["ops: backups"])
