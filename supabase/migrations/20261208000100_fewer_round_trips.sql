-- Fewer database round trips per turn (issue 32: time to first token and CPU per turn).
--
-- 1. The call that begins a run also answers what the run's tools depend on (the
--    conversation's ready files, whether the user keeps memories), so nothing is read
--    between the start of a run and its model request.
-- 2. The follow-up suggestions (with a new conversation's title when the same model call
--    wrote it), and a title from a call of its own, are each stored together with the
--    usage of the model call that wrote them: one call after the answer instead of two.

-- What a run's files and memory tools depend on, by user id (jelly_run_context reads it
-- by token, for callers that have only the token).
create or replace function public.jelly_run_context_of(p_user_id bigint, p_conversation_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'files', coalesce((select jsonb_agg(jsonb_build_object('id', f.id, 'name', f.name)
                                            order by f.created_at, f.id)
                           from public.conversation_files f
                           where f.conversation_id = p_conversation_id and f.status = 'ready'),
                          '[]'::jsonb),
        'memory_enabled', coalesce((select p.memory_enabled from public.user_preferences p
                                    where p.user_id = p_user_id), true))
$$;

create or replace function public.jelly_run_context(p_token text, p_conversation_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select public.jelly_run_context_of(
        (select u.id from public.users u where u.token = p_token), p_conversation_id)
$$;

-- jelly_begin_run as in 20261207000900 (same signature: jelly_start_run keeps calling
-- it), with the tools' `context` in a ready answer.
create or replace function public.jelly_begin_run(
    p_run_id uuid,
    p_message text,
    p_memory integer default 10,
    p_timeout double precision default 120
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
    v_conv public.conversations;
    v_message bigint;
    v_memory jsonb;
begin
    select * into v_run from public.runs r where r.id = p_run_id;
    if v_run.id is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    if v_run.status <> 'pending' or v_run.stop_requested then
        return jsonb_build_object('ready', false, 'stop', true, 'status', v_run.status);
    end if;
    select * into v_conv from public.conversations c where c.id = v_run.conversation_id
    for update;
    if exists (select 1 from public.runs r
               where r.conversation_id = v_run.conversation_id and r.seq < v_run.seq
                 and r.status in ('pending', 'running')) then
        return jsonb_build_object('ready', false);
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('type', t.type, 'content', t.content)
                              order by t.id), '[]'::jsonb)
    into v_memory
    from (select m.id, m.type, m.content from public.chat_messages m
          where m.conversation_id = v_run.conversation_id and m.type in ('human', 'jelly')
            and m.id > coalesce(v_conv.summary_through, 0)
          order by m.id desc limit greatest(p_memory, 0)) t;
    update public.runs set status = 'running', started_at = clock_timestamp(),
        deadline_at = clock_timestamp() + make_interval(secs => p_timeout)
    where id = p_run_id;
    insert into public.chat_messages (user_id, conversation_id, run_id, type, content, application)
    values (v_run.user_id, v_run.conversation_id, p_run_id, 'human', p_message, v_run.application)
    returning id into v_message;
    update public.conversations set updated_at = clock_timestamp() where id = v_run.conversation_id;
    return jsonb_build_object('ready', true, 'message_id', v_message, 'memory', v_memory,
        'summary', v_conv.summary, 'summary_through', v_conv.summary_through,
        'titled', v_conv.title is not null or v_conv.title_by_user,
        'context', public.jelly_run_context_of(v_run.user_id, v_run.conversation_id));
end;
$$;

-- The usage rows of a run's model calls made after its end, recorded and added to its
-- user's spending (jelly_record_usage's work, by the calls below): their totals, or null
-- when there is nothing to charge or the run is gone (its conversation was deleted).
create or replace function public.jelly_charge_run(p_run_id uuid, p_usage jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
begin
    if p_run_id is null or coalesce(jsonb_array_length(p_usage), 0) = 0 then
        return null;
    end if;
    select * into v_run from public.runs r where r.id = p_run_id;
    if v_run.id is null then
        return null;
    end if;
    return public.jelly_insert_usage(v_run.user_id, p_run_id, v_run.application, v_run.model,
                                     p_usage);
end;
$$;

-- The follow-up questions suggested after an answer (at most three are kept); with
-- `p_title`, the title the same model call wrote for the answer's conversation (kept
-- unless the user named it); for a metered run, the usage of that call. Returns that
-- usage's totals (null without).
drop function if exists public.jelly_set_suggestions(bigint, jsonb);
create or replace function public.jelly_set_suggestions(
    p_message_id bigint, p_suggestions jsonb, p_run_id uuid default null,
    p_usage jsonb default null, p_title text default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    update public.chat_messages m set suggestions = coalesce(p_suggestions, '[]'::jsonb)
    where m.id = p_message_id and m.type = 'jelly';
    if p_title is not null then
        update public.conversations c set title = p_title
        from public.chat_messages m
        where m.id = p_message_id and c.id = m.conversation_id and not c.title_by_user;
    end if;
    return public.jelly_charge_run(p_run_id, p_usage);
end;
$$;

-- A better title than the question's first words (from the model), unless the user has
-- named the conversation; for a metered run, with the usage of the call that wrote it
-- (`usage` in the answer).
drop function if exists public.jelly_set_auto_title(uuid, text);
create or replace function public.jelly_set_auto_title(
    p_id uuid, p_title text, p_run_id uuid default null, p_usage jsonb default null
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_done jsonb;
    v_charged jsonb;
begin
    update public.conversations c set title = p_title
    where c.id = p_id and not c.title_by_user
    returning jsonb_build_object('id', c.id, 'title', c.title) into v_done;
    v_charged := public.jelly_charge_run(p_run_id, p_usage);
    if v_charged is null then
        return v_done;
    end if;
    return coalesce(v_done, '{}'::jsonb) || jsonb_build_object('usage', v_charged);
end;
$$;

select public.jelly_server_only(array[
        'public.jelly_run_context_of(bigint, uuid)',
        'public.jelly_charge_run(uuid, jsonb)',
        'public.jelly_run_context(text, uuid)',
        'public.jelly_begin_run(uuid, text, integer, double precision)',
        'public.jelly_set_suggestions(bigint, jsonb, uuid, jsonb, text)',
        'public.jelly_set_auto_title(uuid, text, uuid, jsonb)'
    ]);
